// One owner per attachment: ADD‖ADD, the same ADD twice, ADD‖DEL and
// DEL‖DEL of one (containerID, ifname), with the real binary and a policy
// section. After every round the attachment is whole or gone - pod
// interface, host veth, reservation, record, policy state and kernel
// membership together - and no address is held by two pods.
// NHI_RACE_ROUNDS sets the rounds per race (default 20; `npm run test:races`
// runs 200).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chainConflist, direct, directAsync, pluginConfig, testEnv } from '../helpers/chain.js';
import { createNetns, deleteAllNetns, tryInNetns, type Netns } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { attachmentParts, reservations, wholeness } from '../helpers/attachment.js';
import type { Run } from '../helpers/plugin.js';

const ROUNDS = Number(process.env.NHI_RACE_ROUNDS ?? 20);
const POLICY = [
  { apiVersion: 'networking.k8s.io/v1', kind: 'NetworkPolicy', metadata: { name: 'deny', namespace: 'race' }, spec: { podSelector: {}, policyTypes: ['Ingress'] } },
];

// Twenty rounds of real ADDs and DELs take 10-35 s per test on this 2-core machine, more when
// other work shares it; a test cut by vitest's timeout would leave its loop running into the
// next test's rounds. Each gets 3 minutes.
describe(`races on one attachment (${ROUNDS} rounds each)`, { timeout: 180_000 }, () => {
  const scratch = new Scratch();
  const network = 'race';
  let node: Netns;
  let pod: Netns;
  let steady: Netns;
  let steadyIp: string;
  let list: ReturnType<typeof chainConflist>;
  const env = () => testEnv(scratch.dir);
  const conf = (name: string) => pluginConfig(list, 0, undefined, { 'io.nhi-cni/workload': { namespace: 'race', name, labels: { app: name } } });
  const add = (id = 'racer') => directAsync({ node, verb: 'ADD', config: conf(id), containerId: id, netns: pod.path, env: env() });
  const del = (id = 'racer') => directAsync({ node, verb: 'DEL', config: conf(id), containerId: id, netns: pod.path, env: env() });

  beforeAll(() => {
    node = createNetns('nhin');
    pod = createNetns('nhip');
    steady = createNetns('nhip');
    list = chainConflist({ kind: 'nhi-cni', name: network, cniVersion: '1.1.0', bridge: 'nhi0', ranges: [['10.91.0.0/28']], dir: scratch.dir, ipMasq: false });
    (list.plugins[0] as Record<string, unknown>).policy = { manifests: POLICY };
    const r = direct({ node, verb: 'ADD', config: conf('steady'), containerId: 'steady', netns: steady.path, env: env() });
    expect(r.status, r.stdout).toBe(0);
    steadyIp = r.json.ips[0].address.split('/')[0];
  });
  afterAll(() => {
    deleteAllNetns();
    scratch.cleanup();
  });

  /** The racer's state, and the steady pod untouched: its address reserved to it alone and enforced. */
  function state(former: string[] = []): string {
    const s = wholeness(attachmentParts({ node, pod, dir: scratch.dir, network, containerId: 'racer' }), true, former);
    const res = reservations(`${scratch.dir}/ipam/${network}`);
    expect(res.get(steadyIp), 'the steady pod keeps its reservation').toBe('steady');
    const racerIp = tryInNetns(pod, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'eth0']).stdout.match(/inet ([0-9.]+)/)?.[1];
    expect(racerIp, 'no address on two pods').not.toBe(steadyIp);
    const steadyParts = attachmentParts({ node, pod: steady, dir: scratch.dir, network, containerId: 'steady' });
    expect(wholeness(steadyParts, true)).toBe('present');
    return s;
  }

  const ok = (r: Run) => r.status === 0;
  const ips = (r: Run) => JSON.stringify(r.json?.ips);

  async function settle(former: string[]) {
    const d = await del();
    expect(d.status, d.stdout).toBe(0);
    expect(state(former)).toBe('absent');
  }

  it('ADD‖ADD: one attachment, both answers name the same address', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const [a, b] = await Promise.all([add(), add()]);
      expect(ok(a) || ok(b), a.stdout + b.stdout).toBe(true);
      for (const r of [a, b]) if (!ok(r)) expect(r.json?.code, r.stdout + r.stderr).toBeTypeOf('number');
      if (ok(a) && ok(b)) expect(ips(a)).toBe(ips(b));
      expect(state(), `round ${i}`).toBe('present');
      await settle([(ok(a) ? a : b).json.ips[0].address.split('/')[0]]);
    }
  });

  it('the same ADD twice in a row: the retry gets the first result back', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const a = await add();
      const b = await add();
      expect(a.status, a.stdout).toBe(0);
      expect(b.status, b.stdout).toBe(0);
      expect(ips(b)).toBe(ips(a));
      expect(b.json.interfaces).toEqual(a.json.interfaces);
      expect(state(), `round ${i}`).toBe('present');
      await settle([a.json.ips[0].address.split('/')[0]]);
    }
  });

  it('ADD‖DEL: whole or gone, never half', async () => {
    const seen = new Set<string>();
    for (let i = 0; i < ROUNDS; i++) {
      const [a, d] = await Promise.all([add(), del()]);
      expect(d.status, d.stdout).toBe(0);
      expect(a.status, a.stdout + a.stderr).toBe(0);
      const s = state();
      expect(['present', 'absent'], `round ${i}: ${s}`).toContain(s);
      seen.add(s);
      await settle([a.json.ips[0].address.split('/')[0]]);
    }
  });

  it('DEL‖DEL: both succeed, nothing left', async () => {
    for (let i = 0; i < ROUNDS; i++) {
      const a = await add();
      expect(a.status, a.stdout).toBe(0);
      const [d1, d2] = await Promise.all([del(), del()]);
      expect(d1.status, d1.stdout).toBe(0);
      expect(d2.status, d2.stdout).toBe(0);
      expect(state([a.json.ips[0].address.split('/')[0]]), `round ${i}`).toBe('absent');
    }
  });
});
