// Log lines that name the pod: ADD, CHECK, DEL and a failure each carry the
// container, interface, namespace and pod (CNI_ARGS K8S_POD_*), the final
// line of a call its duration, a failure its code.
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chainConflist, direct, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';

let scratch: Scratch;
let node: Netns;
beforeEach(() => {
  scratch = new Scratch();
  node = createNetns('nhin');
});
afterEach(() => {
  deleteAllNetns();
  scratch.cleanup();
});

describe('log fields', () => {
  it('ADD, CHECK, DEL and an error name the pod, the container and the namespace', () => {
    const l = chainConflist({ kind: 'nhi-cni', name: 'logs', cniVersion: '1.1.0', bridge: 'nhi0', ranges: [['10.72.0.0/24']], dir: scratch.dir });
    const log = scratch.path('cni.log');
    const env = { ...testEnv(scratch.dir), NHI_CNI_LOG_FILE: log, NHI_CNI_LOG_LEVEL: 'info', CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=api-7d4;K8S_POD_UID=u1' };
    const pod = createNetns('nhip');
    const add = direct({ node, verb: 'ADD', config: pluginConfig(l, 0), containerId: 'c-log', netns: pod.path, env });
    expect(add.status, add.stdout).toBe(0);
    expect(direct({ node, verb: 'CHECK', config: pluginConfig(l, 0, add.json), containerId: 'c-log', netns: pod.path, env }).status).toBe(0);
    expect(direct({ node, verb: 'DEL', config: pluginConfig(l, 0, add.json), containerId: 'c-log', netns: pod.path, env }).status).toBe(0);
    const bad = direct({ node, verb: 'ADD', config: pluginConfig(l, 0), containerId: 'c-bad', netns: '/var/run/netns/does-not-exist', env });
    expect(bad.json.code).toBe(3);

    const lines = readFileSync(log, 'utf8').trim().split('\n').map((x) => JSON.parse(x));
    const by = (msg: string) => lines.find((x) => x.msg === msg);
    const common = { network: 'logs', containerId: 'c-log', ifname: 'eth0', netns: pod.path, pod: 'prod/api-7d4' };
    for (const [msg, verb] of [['attachment added', 'ADD'], ['attachment checked', 'CHECK'], ['attachment deleted', 'DEL']] as const) {
      const x = by(msg);
      expect(x, msg).toMatchObject({ ...common, verb });
      expect(x.durationMs).toBeGreaterThan(0);
      expect(x.durationMs).toBeLessThan(30_000);
    }
    expect(by('attachment added').ips).toEqual([add.json.ips[0].address]);
    const err = lines.find((x) => x.code === 3);
    expect(err).toMatchObject({ level: 40, verb: 'ADD', containerId: 'c-bad', ifname: 'eth0', pod: 'prod/api-7d4', netns: '/var/run/netns/does-not-exist' });
    expect(err.msg).toMatch(/does not exist/);
    expect(err.durationMs).toBeGreaterThan(0);
  });
});
