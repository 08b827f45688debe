// One policy state per node: a second network with a policy section and a
// different stateDir must not re-apply the node's table without the first
// network's pods. Its ADD fails with a code-7 error naming the other state
// dir, and the first network's denied flow stays denied (real TCP).
import { copyFileSync, mkdirSync } from 'node:fs';
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainConflist, direct, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, linksOfType, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { ROOT } from '../helpers/paths.js';
import { reaches, startServers } from '../helpers/traffic.js';

describe('two policy state dirs on one node', () => {
  const scratch = new Scratch();
  const policyDir = scratch.path('policies');
  let node: Netns;
  const pods: Record<string, Netns> = {};
  const ip: Record<string, string> = {};
  const servers: ChildProcess[] = [];
  const lists: Record<string, ReturnType<typeof chainConflist>> = {};

  function network(key: string, subnet: string) {
    const list = chainConflist({ kind: 'nhi-cni', name: `own${key}`, cniVersion: '1.1.0', bridge: `nhio${key}`, ranges: [[subnet]], dir: scratch.path(key) });
    (list.plugins[0] as Record<string, unknown>).policy = { dir: policyDir };
    lists[key] = list;
  }
  function add(net: string, name: string, app: string) {
    const pod = (pods[name] ??= createNetns('nhip'));
    const conf = pluginConfig(lists[net]!, 0, undefined, { 'io.nhi-cni/workload': { namespace: 'payments', name, labels: { app }, ports: [{ name: 'postgres', containerPort: 5432, protocol: 'TCP' }] } });
    return direct({ node, verb: 'ADD', config: conf, containerId: name, netns: pod.path, env: testEnv(scratch.path(net)) });
  }

  beforeAll(async () => {
    mkdirSync(policyDir, { recursive: true });
    copyFileSync(`${ROOT}/examples/policies/payments.yaml`, `${policyDir}/payments.yaml`);
    node = createNetns('nhin');
    network('a', '10.82.0.0/24');
    network('b', '10.83.0.0/24');
    for (const [name, app] of [['api', 'payment-service'], ['db', 'payments-db'], ['rep', 'reporting']] as const) {
      const r = add('a', name, app);
      expect(r.status, r.stdout + r.stderr).toBe(0);
      ip[name] = r.json.ips[0].address.split('/')[0];
    }
    servers.push(await startServers(pods.db!, [5432]));
  });
  afterAll(() => {
    for (const s of servers) s.kill();
    deleteAllNetns();
    scratch.cleanup();
  });

  it('the first network enforces: reporting does not reach the database', () => {
    expect(reaches(pods.api!, ip.db!, 5432)).toBe(true);
    expect(reaches(pods.rep!, ip.db!, 5432)).toBe(false);
  });

  it('an ADD on a second network with another stateDir is refused, naming the owner', () => {
    const r = add('b', 'other', 'reporting');
    expect(r.json, r.stdout + r.stderr).toMatchObject({
      code: 7,
      msg: `the node's policy table inet nhi_policy belongs to the policy state in ${scratch.path('a', 'state')}, not to stateDir ${scratch.path('b', 'state')}`,
      details: expect.stringMatching(/must use the same stateDir/),
    });
    // Rolled back: no veth left on the node or in the pod.
    expect(linksOfType(pods.other!, 'veth')).toEqual([]);
    expect(linksOfType(node, 'veth')).toHaveLength(3);
  });

  it('the first network\'s denied flow stays denied, its allowed flow allowed', () => {
    expect(reaches(pods.rep!, ip.db!, 5432)).toBe(false);
    expect(reaches(pods.api!, ip.db!, 5432)).toBe(true);
  });

  it('a DEL on the second network still succeeds (nothing of it is in the table)', () => {
    const r = direct({ node, verb: 'DEL', config: pluginConfig(lists.b!, 0), containerId: 'other', netns: pods.other!.path, env: testEnv(scratch.path('b')) });
    expect(r.status, r.stdout + r.stderr).toBe(0);
  });

  it('the first network keeps working: another pod joins and is enforced', () => {
    const r = add('a', 'rep2', 'reporting');
    expect(r.status, r.stdout + r.stderr).toBe(0);
    expect(reaches(pods.rep2!, ip.db!, 5432)).toBe(false);
    expect(reaches(pods.api!, ip.db!, 5432)).toBe(true);
  });
});
