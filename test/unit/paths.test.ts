// Paths and NUL bytes in configs (fuzz findings: a NUL byte in stateDir and
// over-long path components reached fs calls and came back as code 100).
import { describe, expect, it } from 'vitest';
import { decodeConfig } from '../../src/cni/config.js';
import { absolutePathProblem, checkedPath, nulPath } from '../../src/cni/paths.js';
import { loadCniConfig } from '../../src/chain/config.js';
import { loadIpamConfig } from '../../src/chain/ipam/config.js';
import { loadPolicyConfig } from '../../src/policy/engine/index.js';
import { parseEnv } from '../../src/cni/env.js';
import { logFromConfig, logFromEnv } from '../../src/log.js';
import { identityFromKubernetes } from '../../src/policy/k8s.js';
import { caught } from '../helpers/caught.js';

describe('absolutePathProblem', () => {
  it.each([['/var/lib/nhi-cni'], ['/a/b.c/d-e_f'], [`/${'a'.repeat(255)}`], ['/'], ['/var/lib/ü']])('accepts %j', (p) => {
    expect(absolutePathProblem(p)).toBeUndefined();
  });

  it.each([
    ['var/lib', 'must be an absolute path'],
    ['', 'must be an absolute path'],
    ['/var/\0lib', 'may not contain NUL or control characters'],
    ['/var/lib\n', 'may not contain NUL or control characters'],
    ['/var/\u001b[31mlib', 'may not contain NUL or control characters'],
    ['/var/lib/../etc', 'may not contain ".."'],
    [`/var/${'a'.repeat(256)}`, 'has a component longer than 255 bytes'],
    [`/var/${'é'.repeat(128)}`, 'has a component longer than 255 bytes'],
    [`/${'a/'.repeat(2048)}`, 'is longer than 4095 bytes'],
  ])('refuses %j: %s', (p, why) => {
    expect(absolutePathProblem(p)).toBe(why);
    const e = caught(() => checkedPath(p, 'stateDir'));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`stateDir ${JSON.stringify(p)} ${why}`);
  });
});

describe('NUL bytes in a config', () => {
  const decode = (o: unknown) => decodeConfig(Buffer.from(JSON.stringify(o)));

  it.each([
    [{ name: 'n', stateDir: '/var/lib/x\0y' }, 'config.stateDir'],
    [{ name: 'n', ipam: { type: 'host-local', dataDir: '/d\0' } }, 'config.ipam.dataDir'],
    [{ name: 'n', policy: { dir: '\0' } }, 'config.policy.dir'],
    [{ name: 'n', policy: { manifests: [{ metadata: { name: 'a\0' } }] } }, 'config.policy.manifests[0].metadata.name'],
    [{ name: 'n', runtimeConfig: { 'io.nhi-cni/workload': { labels: { 'a\0': 'b' } } } }, 'config.runtimeConfig["io.nhi-cni/workload"].labels["a\\u0000"]'],
    [{ name: 'n', log: { file: '/var/log/x\0' } }, 'config.log.file'],
  ])('refuses %j with code 7 naming %s', (conf, path) => {
    const e = caught(() => decode(conf));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`${path} contains a NUL byte`);
  });

  it('lets an escaped backslash followed by "u0000" pass: that is no NUL', () => {
    expect(decode({ name: 'n', x: '\\u0000' }).x).toBe('\\u0000');
  });

  it('walks a deeply nested config without overflowing the stack', () => {
    const deep = `{"name":"n","x":${'['.repeat(20000)}"\\u0000"${']'.repeat(20000)}}`;
    expect(caught(() => decodeConfig(Buffer.from(deep))).code).toBe(7);
    expect(nulPath(JSON.parse(deep).x, 'x')).toBe(`x${'[0]'.repeat(20000)}`);
  });
});

describe('config paths reach the filesystem only when usable', () => {
  it('stateDir with an over-long component is code 7', () => {
    const e = caught(() => loadCniConfig({ ipam: { type: 'host-local' }, stateDir: `/var/lib/${'s'.repeat(300)}` }));
    expect(e.code).toBe(7);
  });

  it.each([['dataDir'], ['resolvConf']])('ipam.%s with a control character is code 7', (key) => {
    const e = caught(() => loadIpamConfig({ ipam: { type: 'host-local', subnet: '10.1.2.0/24', [key]: '/var/lib/a\tb' } }, 'n', '1.0.0'));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`ipam.${key} "/var/lib/a\\tb" may not contain NUL or control characters`);
  });
});

// Every path nhi-cni takes from a config or the environment goes through
// absolutePathProblem: the same reasons, each caller's own code and key.
describe('one rule for every configured path', () => {
  const bad = '/var/lib/a\tb';
  const why = 'may not contain NUL or control characters';
  const env = { CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/n', CNI_IFNAME: 'eth0', CNI_PATH: '/opt/cni/bin' };
  it.each([
    ['policy.dir', () => loadPolicyConfig({ dir: bad }, '/var/lib/nhi-cni'), 7, `policy.dir ${JSON.stringify(bad)} ${why}`],
    ['log.file', () => logFromConfig({ file: bad }), 7, `log.file ${JSON.stringify(bad)} ${why}`],
    ['NHI_CNI_LOG_FILE', () => logFromEnv({ NHI_CNI_LOG_FILE: bad }), 4, `NHI_CNI_LOG_FILE ${JSON.stringify(bad)} ${why}`],
    ['CNI_NETNS', () => parseEnv({ ...env, CNI_NETNS: bad }), 4, `invalid env variables: CNI_NETNS ${JSON.stringify(bad)} ${why}`],
  ])('%s', (_key, f, code, message) => {
    const e = caught(f);
    expect(e.code).toBe(code);
    expect(e.message).toBe(message);
  });

  it('policy.kubeconfig', async () => {
    const e = await identityFromKubernetes({ policy: { kubeconfig: bad } }, { K8S_POD_NAMESPACE: 'ns', K8S_POD_NAME: 'p' }).then(
      () => undefined,
      (x: unknown) => x as { code: number; message: string },
    );
    expect(e?.code).toBe(7);
    expect(e?.message).toBe(`policy.kubeconfig ${JSON.stringify(bad)} ${why}`);
  });
});
