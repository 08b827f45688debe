// The IPAM step of the nhi-cni chain: host-local (`host-local` or `nhi-ipam`)
// runs in-process; any other ipam.type is executed from CNI_PATH as a
// delegated plugin, as SPEC.md "Delegated plugins" describes: same
// environment, same stdin, its result read back in any version.
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';
import { CniError, Code } from '../../cni/errors.js';
import { parsePrevResult, type Result } from '../../cni/result.js';
import { run } from '../../sys/exec.js';
import type { CniRequest } from '../../cni/request.js';
import { loadIpamConfig, type IpamConfig } from './config.js';
import { ipamAdd, ipamCheck, ipamDel, ipamGc, ipamStatus } from './index.js';
import type { Attachment } from '../../cni/attachments.js';
import { log } from '../../log.js';
import { podKey } from '../../policy/engine/pods.js';
import { bootId } from '../../sys/sysfs.js';
import { subject, type AddContext, type ChainModule } from '../module.js';
import { RECLAIM_GRACE_MS, releaseLeaked, scan } from '../reclaim.js';

export interface IpamStep {
  add(): Promise<Result>;
  del(): Promise<void>;
  check(prev: Result): Promise<void>;
  gc(valid: Attachment[] | undefined): Promise<void>;
  status(): Promise<void>;
  /** The built-in IPAM's directory (leak reclaim reads and releases it); absent for a delegated plugin. */
  disk?: { dataDir: string; network: string };
}

export function builtinIpam(req: CniRequest, envIp?: string): IpamStep {
  // Read and validated now, before the chain touches anything: an invalid
  // IPAM section found only when DEL or GC reached IPAM used to fail them
  // after they had already written the policy state (a fuzz finding).
  const cfg: IpamConfig = loadIpamConfig(req.config, req.config.name, req.version, envIp);
  const conf = () => cfg;
  const att = { containerId: req.env.containerId, ifname: req.env.ifname };
  return {
    add: async () => ipamAdd(conf(), att),
    del: async () => void ipamDel(conf(), att),
    check: async (prev) => ipamCheck(conf(), att, prev),
    gc: async (valid) => void ipamGc(conf(), valid),
    status: async () => ipamStatus(conf()),
    disk: { dataDir: cfg.dataDir, network: cfg.network },
  };
}

function checkType(type: string): void {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(type)) {
    throw new CniError(Code.InvalidConfig, `invalid ipam.type ${JSON.stringify(type)}`, 'a plugin type is a file name in CNI_PATH');
  }
}

function findPlugin(type: string, path: string[]): string {
  for (const dir of path) {
    const p = join(dir, type);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not in this directory
    }
  }
  throw new CniError(Code.InvalidConfig, `failed to find plugin "${type}" in path [${path.join(' ')}]`, 'install the IPAM plugin into a CNI_PATH directory');
}

export function delegatedIpam(req: CniRequest, type: string): IpamStep {
  // The name is checked now, like the built-in config, so that a DEL or GC
  // with a bad ipam.type fails before it touches anything (a fuzz finding);
  // the plugin is looked up when it runs.
  checkType(type);
  const exec = async (verb: string): Promise<Result | undefined> => {
    const plugin = findPlugin(type, req.env.path);
    // The delegate sees the same variables and stdin as we did, but its own verb.
    const env = ['CNI_COMMAND', 'CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME', 'CNI_ARGS', 'CNI_PATH'];
    const saved = env.map((k) => process.env[k]);
    process.env.CNI_COMMAND = verb;
    try {
      const r = await run(plugin, [], req.stdin.toString('utf8'));
      let out: unknown;
      try {
        out = r.stdout.trim() ? JSON.parse(r.stdout) : undefined;
      } catch {
        throw new CniError(Code.DecodeFailure, `IPAM plugin ${type} printed something that is not JSON`, r.stdout.slice(0, 200));
      }
      if (r.exitCode !== 0) {
        const e = out as { code?: number; msg?: string; details?: string } | undefined;
        throw new CniError(Code.SystemFailure, `IPAM plugin ${type} ${verb} failed: ${e?.msg ?? r.stderr.trim()}`, e?.details ?? `code ${e?.code ?? '?'}`);
      }
      return verb === 'ADD' ? parsePrevResult(out, req.version) : undefined;
    } finally {
      env.forEach((k, i) => (saved[i] === undefined ? delete process.env[k] : (process.env[k] = saved[i])));
    }
  };
  return {
    add: async () => {
      const r = await exec('ADD');
      if (!r?.ips?.length) throw new CniError(Code.SystemFailure, `IPAM plugin ${type} returned missing IP config`);
      return r;
    },
    del: async () => void (await exec('DEL')),
    check: async () => void (await exec('CHECK')),
    gc: async () => void (await exec('GC')),
    status: async () => {
      try {
        await exec('STATUS');
      } catch (e) {
        throw new CniError(Code.NotAvailable, `IPAM plugin ${type} is not available`, (e as Error).message);
      }
    },
  };
}

/**
 * IPAM's ADD; when the range is exhausted (code 101), the built-in IPAM's
 * reservations proven dead (src/chain/reclaim.ts: a previous boot, or host veth
 * and namespace gone for longer than the grace period) are released, each
 * logged, and IPAM tries once more. The reclaimed attachments' port guards and
 * policy membership go in this ADD's nft transaction (`ipam.add` below).
 */
async function allocate(x: AddContext): Promise<void> {
  const { c } = x;
  try {
    x.ipam = { result: await c.ipam.add() };
    return;
  } catch (e) {
    const disk = c.ipam.disk;
    if (!(e instanceof CniError && e.code === Code.PoolExhausted) || !disk) throw e;
    const where = { ...disk, stateDir: c.cfg.stateDir, ctx: { bootId: bootId(), now: Date.now(), graceMs: RECLAIM_GRACE_MS } };
    const dead = (await scan(where)).filter((f) => f.state === 'leaked');
    const reclaimed = dead.length ? await releaseLeaked(where, dead) : undefined;
    for (const f of reclaimed?.released ?? []) {
      log.warn({ verb: 'ADD', ...subject(c), reclaimed: { ip: f.ip, containerId: f.containerId, ifname: f.ifname, reason: f.reason, detail: f.detail } }, 'range exhausted: released a dead reservation');
    }
    // Tried once more even when this ADD released nothing: an ADD beside it may
    // just have released more dead reservations than it needed.
    x.ipam = { result: await c.ipam.add(), ...(reclaimed?.released.length ? { reclaimed } : {}) };
  }
}

/** The chain's IPAM module: addresses first (every other module's part depends on them), released last. */
export const ipam: ChainModule = {
  name: 'ipam',
  prepare: allocate,
  add(x, plan) {
    const r = x.ipam?.reclaimed;
    if (!r) return;
    plan.nft.push(...r.unguard);
    const network = x.c.req.config.name;
    plan.policy.changes.push((pods) => { for (const a of r.removed) delete pods[podKey(network, a.containerId, a.ifname)]; });
  },
  del(t, plan) {
    if (t.release) plan.release.push(() => t.c.ipam.del());
  },
  check: ({ c, prev }) => c.ipam.check(prev),
  gc({ c, valid }, plan) {
    plan.release.push(() => c.ipam.gc(valid));
  },
};
