// A kubeconfig's password or token never reaches stdout or the log, even when
// it is the part the error is about.
import { readFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { invoke, Scratch } from '../helpers/plugin.js';
import { kubeconfigDoc } from '../helpers/kubeconfig.js';

let scratch: Scratch;
beforeEach(() => {
  scratch = new Scratch();
});
afterEach(() => scratch.cleanup());

const SECRET = 'Pa55w0rdXYZ';

function add(kubeconfig: string) {
  const kc = scratch.path('kubeconfig');
  writeFileSync(kc, kubeconfig);
  const log = scratch.path('nhi.log');
  const r = invoke({
    env: {
      CNI_COMMAND: 'ADD', CNI_CONTAINERID: 'c1', CNI_NETNS: '/var/run/netns/none', CNI_IFNAME: 'eth0', CNI_PATH: '/nonexistent',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p', NHI_CNI_LOG_FILE: log, NHI_CNI_LOG_LEVEL: 'debug',
    },
    stdin: JSON.stringify({
      cniVersion: '1.0.0', name: 'n', type: 'nhi-cni', stateDir: scratch.path('state'),
      ipam: { type: 'host-local', subnet: '10.9.0.0/24', dataDir: scratch.path('ipam') },
      policy: { manifests: [], kubeconfig: kc },
    }),
  });
  return { r, log: readFileSync(log, 'utf8') };
}

const doc = kubeconfigDoc;

describe('secrets in errors', () => {
  it('a server URL with a password: code 7, the password nowhere', () => {
    const { r, log } = add(doc(`http://admin:${SECRET}@10.0.0.1:6443`, '    token: abc'));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringMatching(/only https/) });
    expect(r.stdout + r.stderr + log).not.toContain(SECRET);
    expect(log).toMatch(/only https/);
  });

  it('a YAML error on the token line: code 7, the token nowhere', () => {
    const { r, log } = add(doc('https://10.0.0.1:6443', `    token: abc.${SECRET}: x`));
    expect(r.json).toMatchObject({ code: 7, msg: expect.stringMatching(/not valid YAML/) });
    expect(r.stdout + r.stderr + log).not.toContain(SECRET);
  });
});
