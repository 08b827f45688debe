// chainAdd without root (issue 8): the processes it would start (`ip`, `nft`)
// and the links sysfs would show are faked, so that each step can fail in
// turn and the rollback can be read: what it deletes, what it takes out of
// nftables, that IPAM is released and the record gone. The namespace tests
// (test/ns/chain-ops, attachment-failures) prove the same on a real kernel.
import { existsSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeEach, describe, expect, it, vi } from 'vitest';

/** The fake kernel: links by name, and what was run, in order. */
const k = vi.hoisted(() => ({
  links: new Set<string>(),
  up: new Set<string>(),
  events: [] as string[],
  nft: [] as { nftables: Record<string, Record<string, { name?: string }>>[] }[],
  fail: '' as '' | 'host' | 'nft' | 'pod' | 'up',
}));

vi.mock('../../src/sys/exec.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../../src/sys/exec.js')>();
  const { readFileSync: read } = await import('node:fs');
  const ok = { stdout: '', stderr: '', exitCode: 0 };
  return {
    ...orig,
    run: async (file: string, args: string[], input?: string) => {
      await new Promise((r) => setTimeout(r, 5)); // the nft commit and the node's batch overlap, as on a kernel
      if (file === 'nft') {
        const tx = JSON.parse(read(args[2]!, 'utf8'));
        k.events.push(`nft (${k.nft.length})`);
        if (k.fail === 'nft' && k.nft.length === 0) {
          k.nft.push(tx);
          return { stdout: '', stderr: 'Error: Could not process rule: No such file or directory', exitCode: 1 };
        }
        k.nft.push(tx);
        return ok;
      }
      if (file === 'ip') {
        k.events.push('ip node');
        if (k.fail === 'host' && (input ?? '').includes('type veth')) return { stdout: '', stderr: 'RTNETLINK answers: Operation not permitted\nCommand failed -:3\n', exitCode: 1 };
        for (const line of (input ?? '').trim().split('\n')) {
          const t = line.split(' ');
          if (t[0] === 'link' && t[1] === 'add') k.links.add(t[2]!);
          if (t[0] === 'link' && t[1] === 'del') k.links.delete(t[2]!);
        }
        return ok;
      }
      if (file === 'nsenter') {
        k.events.push('ip pod');
        return k.fail === 'pod' ? { stdout: '', stderr: 'RTNETLINK answers: File exists\nCommand failed -:2\n', exitCode: 1 } : ok;
      }
      throw new Error(`unexpected process ${file}`);
    },
  };
});

vi.mock('../../src/sys/sysfs.js', async (importOriginal) => {
  const orig = await importOriginal<typeof import('../../src/sys/sysfs.js')>();
  return {
    ...orig,
    linkExists: (n: string) => k.links.has(n),
    isBridge: (n: string) => k.links.has(n) && n === 'br0',
    linkIndex: (n: string) => (k.links.has(n) ? 7 : undefined),
    linkMac: (n: string) => (k.links.has(n) ? '0a:00:00:00:00:07' : undefined),
    linkMaster: () => 'br0',
    ensureSysctl: () => true,
    readSysctl: () => undefined,
    netnsId: (p: string) => (p === '/run/netns/pod' ? 'pod' : undefined),
    ownNetnsId: () => 'node',
    bootId: () => 'boot-1',
    setLinkUp: (n: string) => {
      k.events.push(`up ${n}`);
      if (k.fail === 'up') throw new Error('Operation not permitted');
      k.up.add(n);
    },
    setLinkDown: (n: string) => {
      k.events.push(`down ${n}`);
      k.up.delete(n);
    },
  };
});

const { loadCniConfig } = await import('../../src/chain/config.js');
const { chainAdd } = await import('../../src/chain/runner.js');
const { CniError } = await import('../../src/cni/errors.js');
const { AttachmentStore } = await import('../../src/chain/state.js');

const dir = mkdtempSync(join(tmpdir(), 'nhi-rollback-'));
process.env.NHI_CNI_RUN_DIR = join(dir, 'run');
afterAll(() => {
  delete process.env.NHI_CNI_RUN_DIR;
  rmSync(dir, { recursive: true, force: true });
});

let released = 0;
/** A state dir per test: safe-path keeps what it checked for the process's life. */
let stateDir = '';
let tests = 0;
function chain() {
  const cfg = loadCniConfig({ bridge: 'br0', isGateway: true, ipMasq: true, stateDir, ipam: { type: 'host-local' } });
  return {
    cfg,
    ipam: {
      add: async () => ({ ips: [{ address: '10.30.0.5/24', gateway: '10.30.0.1' }] }),
      del: async () => void released++,
      check: async () => undefined,
      gc: async () => undefined,
      status: async () => undefined,
    },
    req: { env: { verb: 'ADD' as const, containerId: 'c1', netns: '/run/netns/pod', ifname: 'eth0', args: '', path: [] }, config: { name: 'rb', cniVersion: '1.1.0' }, version: '1.1.0' as const, stdin: Buffer.from('{}') },
  };
}

const records = () => { try { return readdirSync(join(stateDir, 'rb', 'attachments')); } catch { return []; } };
const veths = () => [...k.links].filter((l) => l.startsWith('veth'));
/** The guard elements a transaction adds or deletes for ports named like host veths. */
const guardOps = (tx: (typeof k.nft)[number], verb: 'add' | 'delete') =>
  tx.nftables.filter((c) => c[verb]?.element && JSON.stringify(c).includes('"guard_ifs"')).length;

beforeEach(() => {
  k.links.clear();
  k.up.clear();
  k.events.length = 0;
  k.nft.length = 0;
  k.fail = '';
  released = 0;
  stateDir = join(dir, `state-${tests++}`);
  // What the plugin does before the chain (src/plugin/cni.ts): the attachments' directory.
  new AttachmentStore(stateDir, 'rb').ensureDir();
});

describe('chainAdd against a fake kernel', () => {
  it('succeeds with three processes: nft beside the node batch, the pod batch, the node side up last', async () => {
    const r = await chainAdd(chain());
    expect(r.ips?.[0]?.address).toBe('10.30.0.5/24');
    const host = veths()[0]!;
    expect(k.events.filter((e) => !e.startsWith('up'))).toHaveLength(3);
    // The node side comes up only after the transaction and the pod's batch.
    expect(k.events.at(-1)).toBe(`up ${host}`);
    expect(k.events.indexOf(`up ${host}`)).toBeGreaterThan(k.events.indexOf('nft (0)'));
    expect(k.events.indexOf(`up ${host}`)).toBeGreaterThan(k.events.indexOf('ip pod'));
    expect(guardOps(k.nft[0]!, 'add')).toBe(1);
    expect(records()).toHaveLength(1);
    expect(released).toBe(0);
  });

  it.each([
    ['host', /setting up the bridge and veth pair failed/],
    ['nft', /installing nftables state failed/],
    ['pod', /configuring the pod interface failed/],
    ['up', /bringing veth[0-9a-f]{8} up failed/],
  ] as const)('a failure at "%s" is rolled back whole: no veth, the guard taken out, IPAM released, no record', async (step, msg) => {
    k.fail = step;
    const e = await chainAdd(chain()).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(CniError);
    expect((e as Error).message).toMatch(msg);
    expect(veths()).toEqual([]);
    expect(k.up.size).toBe(0);
    expect(released).toBe(1);
    expect(records()).toEqual([]);
    // The ADD's transaction may have reached the kernel (it runs beside the
    // node's batch): the rollback's own transaction deletes the guard again.
    const last = k.nft.at(-1)!;
    expect(k.nft.length).toBe(2);
    expect(guardOps(last, 'delete')).toBe(1);
    // Nothing was ever brought up, except the failing attempt itself.
    expect(k.events.filter((x) => x.startsWith('up'))).toHaveLength(step === 'up' ? 1 : 0);
    // The run dir keeps no transaction file.
    expect(existsSync(join(dir, 'run')) ? readdirSync(join(dir, 'run')).filter((f) => f.includes('nft')) : []).toEqual([]);
  });
});
