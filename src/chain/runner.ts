// The nhi-cni chain: IPAM, bridge, veth and masquerade as one ADD in one
// process. Modules contribute to one Plan, which the runner applies with one
// `ip -batch` on the node, one `ip -batch` in the pod (plus a sysctl process
// only for IPv6 or a runtime-chosen MAC) and one nft transaction. An ADD that
// fails undoes what it did, newest first; DEL undoes an ADD whatever state it
// reached; GC drops what no valid attachment owns. Over 400 lines because the
// verbs share private helpers (removeLinks, teardown) that no other module needs.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CniError, Code } from '../cni/errors.js';
import { parsePrevResult, type IpConfig, type Result } from '../cni/result.js';
import { equal, formatIp, parseCidr } from '../net/ip.js';
import { onPath, run, spawnCount } from '../sys/exec.js';
import { trace } from '../sys/trace.js';
import { batchFailure, IpBatch, runHostBatch, runNetnsBatch } from '../sys/ip.js';
import { applyNft, NftTransaction, type NftCommand } from '../sys/nft.js';
import { bootId, isBridge, linkExists, linkMaster, netnsId, ownNetnsId } from '../sys/sysfs.js';
import { prevResultOf, type CniRequest } from '../cni/request.js';
import type { Identity, Policy } from '../policy/model.js';
import { crashPoint } from '../sys/testhooks.js';
import type { RemovableLock } from '../sys/lock.js';
import { keepValid, placePod, podKey, type PolicyEngine } from '../policy/engine/index.js';
import { validAttachments } from '../cni/attachments.js';
import { log } from '../log.js';
import { bridgeAdd, bridgeInterface, gatewayOf, settledBridge } from './bridge.js';
import { BUILTIN_IPAM, DEFAULT_RUN_DIR, type CniConfig } from './config.js';
import type { IpamStep } from './ipam/module.js';
import { appendLedger, type LedgerEntry } from './ledger.js';
import { masqAdd, masqInstalled, subnetsOf } from './masq.js';
import { Plan } from './plan.js';
import { AttachmentStore, RunCache, type AttachmentRecord } from './state.js';
import { RECLAIM_GRACE_MS, releaseLeaked, scan, type ReleaseOutcome } from './reclaim.js';
import { hostVethInterface, hostVethName, macFor, vethAdd } from './veth.js';
import { checkGuard, guardAdd, guardDel, type GuardedPort } from './spoofcheck.js';

export interface Chain {
  cfg: CniConfig;
  ipam: IpamStep;
  req: CniRequest;
  /** "namespace/name" from CNI_ARGS K8S_POD_NAMESPACE and K8S_POD_NAME, when given. */
  pod?: string;
  /** The workload identity (capability io.nhi-cni/workload, args.cni.labels), on ADD. */
  identity?: Identity;
  /** The policy engine of the `policy` section: enforcement is on when present. */
  policy?: PolicyEngine;
  /** The manifests as read for this ADD (undefined: the ones last applied). */
  policies?: Policy[];
}

/**
 * Appends to the identity ledger. A ledger that cannot be written is logged,
 * not fatal: refusing pods because a disk is full would trade availability
 * for a record the log line itself also carries.
 */
function toLedger(c: Chain, event: 'ADD' | 'DEL', ips: string[]): void {
  const { req } = c;
  const e: LedgerEntry = {
    time: new Date().toISOString(), event, network: req.config.name,
    containerId: req.env.containerId, ifname: req.env.ifname, netns: req.env.netns, ips,
  };
  if (c.pod) e.pod = c.pod;
  if (event === 'ADD' && c.identity) {
    const { namespace, name, labels, serviceAccount } = c.identity;
    e.identity = serviceAccount ? { namespace, name, labels, serviceAccount } : { namespace, name, labels };
  }
  try {
    appendLedger(join(c.cfg.stateDir, 'ledger.jsonl'), e);
  } catch (err) {
    log.error({ ...e, error: (err as Error).message }, 'cannot append to the identity ledger');
  }
}

/**
 * What every log line of an attachment carries: network, container, interface,
 * namespace, and the pod (CNI_ARGS K8S_POD_*, else the workload identity).
 */
function subject(c: Chain): Record<string, unknown> {
  const { containerId, ifname, netns } = c.req.env;
  const pod = c.pod ?? (c.identity ? `${c.identity.namespace}/${c.identity.name}` : undefined);
  return { network: c.req.config.name, containerId, ifname, netns, ...(pod ? { pod } : {}) };
}

/** Milliseconds since the process started: the whole call as the runtime waited for it. */
const elapsedMs = () => Math.round(performance.now());

/** Test hook (sys/testhooks.ts): NHI_CNI_CRASH_AFTER=<step> kills the ADD right after that step. */
const step = crashPoint;

export const ADD_STEPS = ['ipam', 'record', 'host', 'pod-sysctl', 'nft', 'pod'] as const;

function runCache(): RunCache {
  return new RunCache(process.env.NHI_CNI_RUN_DIR || DEFAULT_RUN_DIR, ownNetnsId());
}

function checkNetns(netns: string): void {
  const id = netnsId(netns);
  if (id === undefined) throw new CniError(Code.UnknownContainer, `network namespace ${netns} does not exist`, 'CNI_NETNS must name the pod\'s namespace');
  // The reference refuses its own namespace (containernetworking/plugins#714:
  // a recycled /proc/<pid>/ns/net once made a plugin reconfigure the host).
  if (id === ownNetnsId() && !/^(1|true)$/i.test(process.env.CNI_NETNS_OVERRIDE ?? '')) {
    throw new CniError(Code.InvalidEnv, `CNI_NETNS ${netns} is the plugin's own network namespace`, 'refusing to configure the node as if it were a pod');
  }
}

/**
 * A repeated ADD of an attachment that completed (a runtime's retry, or two
 * ADDs of one id at once): the first one's result while its pair still
 * exists in the same namespace. Otherwise an error, touching nothing: the
 * attachment belongs to the first ADD until a DEL.
 */
function repeatedAdd(c: Chain, prior: AttachmentRecord & { result: Result }): Result {
  const { containerId, ifname, netns } = c.req.env;
  if (prior.netns === netns && linkExists(prior.hostVeth)) {
    log.info({ verb: 'ADD', ...subject(c), hostVeth: prior.hostVeth, durationMs: elapsedMs() }, 'attachment exists; returning its result');
    return prior.result;
  }
  throw new CniError(Code.SystemFailure,
    `container ${containerId} interface ${ifname} is already attached to network ${c.req.config.name}`,
    prior.netns !== netns ? `it was added in ${prior.netns}; DEL it before adding it again` : `its host veth ${prior.hostVeth} is gone; DEL it before adding it again`);
}

export async function chainAdd(c: Chain): Promise<Result> {
  const { cfg, req } = c;
  const { containerId, ifname, netns } = req.env;
  checkNetns(netns);
  const store = new AttachmentStore(cfg.stateDir, req.config.name);
  const cache = runCache();

  // The caller holds the attachment's lock: a record here is a completed ADD
  // or one that was killed, never one in progress.
  const prior = store.read(containerId, ifname);
  if (prior?.result) return repeatedAdd(c, prior as AttachmentRecord & { result: Result });
  if (prior) {
    log.warn({ verb: 'ADD', ...subject(c), hostVeth: prior.hostVeth }, 'removing what an earlier, interrupted ADD left');
    await teardown(c, { hostVeth: prior.hostVeth, netns: '', ips: prior.ips, port: portOf(prior.hostVeth, prior, undefined) });
  }

  trace('chain start');
  const { result: ipamResult, reclaimed } = await ipamAdd(c);
  trace('ipam done');
  step('ipam');
  const ips = ipamResult.ips ?? [];
  let hostVeth = hostVethName();
  const rec: AttachmentRecord = {
    containerId, ifname, netns, bridge: cfg.bridge, hostVeth,
    ips: ips.map((i) => i.address), created: new Date().toISOString(),
  };
  const boot = bootId();
  if (boot) rec.boot = boot;
  rec.mac = cfg.mac ?? macFor(ips);
  const guard = (port: string): GuardedPort => ({ hostVeth: port, mac: rec.mac!, ips: rec.ips.map((a) => a.split('/')[0]!), level: cfg.guard });
  let stage = 'ipam';
  let nftDone: Started<void> | undefined;
  let nftApplied = false;
  /** The host veth name the port guard was installed for. */
  let guarded = hostVeth;
  // What this invocation made, for the rollback: a host veth of that name
  // that someone else made must survive it.
  let vethOurs = true;
  try {
    store.write(rec);
    trace('record written');
    stage = 'record';
    step('record');

    // The nft transaction does not depend on the links (the port guard names
    // the host veth before it exists), and its commit spends most of its time
    // waiting in the kernel (~20 ms here): it runs beside the node's batch.
    // The pod's batch, which brings the pod's interface up, waits for it: no
    // frame leaves the pod before its guard and policy are in place.
    let plan!: Plan;
    let veth!: ReturnType<typeof vethAdd>;
    // Up to three tries: another ADD may create the bridge between our look
    // and our batch, or (once in 4 billion) pick the same veth name.
    for (let attempt = 0, bridgeSeen = false; ; attempt++) {
      plan = new Plan();
      const br = await bridgeAdd(cfg, ips, plan, cache, bridgeSeen);
      veth = vethAdd(cfg, { hostVeth, ifname, netns, ips, routes: ipamResult.routes ?? [] }, plan);
      if (cfg.ipMasq) masqAdd(req.config.name, ips, plan, cfg.clusterCIDRs);
      if (!nftDone) {
        plan.nft.push(...(reclaimed?.unguard ?? []), ...guardAdd(guard(hostVeth)));
        nftDone = started(applyNftWork(c, plan, ips, reclaimed?.removed).then(() => { nftApplied = true; }));
      }
      const r = await runHostBatch(plan.host);
      if (r.exitCode === 0) break;
      const f = batchFailure(r);
      const exists = /File exists/.test(f.message);
      if (attempt < 2 && exists && f.line === br.createLine && settledBridge(cfg.bridge)) {
        bridgeSeen = true;
        continue;
      }
      if (exists && f.line === veth.createLine) {
        if (attempt < 2 && linkExists(hostVeth)) {
          hostVeth = hostVethName();
          store.write({ ...rec, hostVeth });
          continue;
        }
        vethOurs = false;
        throw new CniError(Code.SystemFailure, `container veth name ("${ifname}") peer provided ("${hostVeth}") already exists`,
          `the pod's namespace already has an interface ${ifname}`);
      }
      throw new CniError(Code.SystemFailure, 'setting up the bridge and veth pair failed', f.message);
    }
    rec.hostVeth = hostVeth;
    stage = 'host';
    step('host');
    if (plan.podSysctls.length) {
      const r = await run('nsenter', [`--net=${netns}`, '--', 'sysctl', '-q', '-e', '-w', ...plan.podSysctls]);
      if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'setting sysctls in the pod failed', r.stderr.trim());
    }
    step('pod-sysctl');
    await nftDone!.wait();
    if (guarded !== hostVeth) {
      // The veth got another name on a retry (a name clash): move the guard to it.
      await applyGuard([...guardDel(guard(guarded)), ...guardAdd(guard(hostVeth))]);
      guarded = hostVeth;
    }
    step('nft');
    const pr = await runNetnsBatch(netns, plan.pod);
    if (pr.exitCode !== 0) throw new CniError(Code.SystemFailure, 'configuring the pod interface failed', batchFailure(pr).message);
    stage = 'pod';
    step('pod');
    for (const a of plan.after) a();

    const result: Result = {
      interfaces: [bridgeInterface(cfg), hostVethInterface(hostVeth), { name: ifname, mac: veth.containerMac, sandbox: netns }],
      ips: ips.map((ip) => ({
        ...ip,
        interface: 2,
        ...(cfg.isGateway && !ip.gateway ? { gateway: formatIp(gatewayOf(ip).ip) } : {}),
      })),
    };
    if (veth.routes.length) result.routes = veth.routes;
    const dns = cfg.dns ?? ipamResult.dns;
    if (dns) result.dns = dns;
    // The attachment is complete: a repeated ADD now gets this result.
    store.write({ ...rec, result });
    toLedger(c, 'ADD', rec.ips);
    log.info({ verb: 'ADD', ...subject(c), hostVeth, ips: rec.ips, processes: spawnCount(), durationMs: elapsedMs() }, 'attachment added');
    return result;
  } catch (e) {
    // Undo, newest first; each undo step tolerates what is already gone.
    log.warn({ verb: 'ADD', ...subject(c), stage, error: (e as Error).message }, 'ADD failed; rolling back');
    // A transaction still in flight is waited for, so that nothing it adds outlives the rollback.
    const nftError = await nftDone?.wait().then(() => undefined, (err: unknown) => err);
    await removeLinks(vethOurs ? hostVeth : undefined, stage === 'ipam' || stage === 'record' ? '' : netns, ifname).catch(() => undefined);
    // A policy change that never got its lock changed nothing; any other may have reached the kernel.
    const touched = nftDone !== undefined && (nftApplied || !(nftError instanceof CniError && nftError.code === Code.TryAgainLater));
    if (touched) {
      const unguard = [...guardDel(guard(guarded)), ...(guarded !== hostVeth ? guardDel(guard(hostVeth)) : [])];
      await unguardWith(c, unguard, (engine) => engine.reconcile({ change: (pods) => delete pods[podKey(req.config.name, containerId, ifname)], extra: unguard })).catch(() => undefined);
    }
    await c.ipam.del().catch(() => undefined);
    store.remove(containerId, ifname);
    throw e;
  }
}

/**
 * IPAM's ADD; when the range is exhausted (code 101), the built-in IPAM's
 * reservations proven dead (src/chain/reclaim.ts: a previous boot, or host veth
 * and namespace gone for longer than the grace period) are released, each
 * logged, and IPAM tries once more. The reclaimed attachments' port guards and
 * policy membership go in this ADD's nft transaction.
 */
async function ipamAdd(c: Chain): Promise<{ result: Result; reclaimed?: ReleaseOutcome }> {
  try {
    return { result: await c.ipam.add() };
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
    return { result: await c.ipam.add(), ...(reclaimed?.released.length ? { reclaimed } : {}) };
  }
}

/**
 * Deletes the pair: from the node by the host-side name when it is known and
 * present (no namespace needed), else from inside the pod by its name. Gone
 * already is fine.
 */
async function removeLinks(hostVeth: string | undefined, netns: string, ifname: string): Promise<void> {
  if (hostVeth && linkExists(hostVeth)) {
    const r = await runHostBatch(new IpBatch().add('link', 'del', hostVeth));
    if (r.exitCode === 0 || !linkExists(hostVeth)) return;
    throw new CniError(Code.SystemFailure, `deleting ${hostVeth} failed`, batchFailure(r).message);
  }
  if (netns && existsSync(netns)) {
    const r = await runNetnsBatch(netns, new IpBatch().add('link', 'del', ifname));
    if (r.exitCode !== 0 && !/Cannot find device|does not exist/.test(r.stderr)) {
      throw new CniError(Code.SystemFailure, `deleting ${ifname} in ${netns} failed`, batchFailure(r).message);
    }
  }
}

async function applyPlanNft(plan: Plan): Promise<void> {
  const r = await applyNft(plan.nft);
  if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'installing nftables state failed', r.stderr.trim());
}

/**
 * The ADD's one nft transaction: the plan's own commands (the port guard,
 * masquerade), plus, with a policy section, the node's whole policy state
 * with this pod in it - so the pod's policy is in place before ADD returns.
 */
async function applyNftWork(c: Chain, plan: Plan, ips: IpConfig[], reclaimed: ReleaseOutcome['removed'] = []): Promise<void> {
  if (!c.policy) return applyPlanNft(plan);
  const { req } = c;
  const key = podKey(req.config.name, req.env.containerId, req.env.ifname);
  const pod = {
    network: req.config.name, containerId: req.env.containerId, ifname: req.env.ifname,
    ips: ips.map((i) => i.address.split('/')[0]!),
    ...(c.identity ? { identity: c.identity } : {}),
  };
  await c.policy.reconcile({
    change: (pods) => {
      for (const r of reclaimed) delete pods[podKey(req.config.name, r.containerId, r.ifname)];
      placePod(pods, key, pod);
    },
    policies: c.policies, extra: plan.nft.commands,
  });
}

/**
 * Takes port guards away: inside the policy change `withPolicy` makes (given
 * the same commands, so one transaction does both), or alone without a policy.
 */
async function unguardWith(c: Chain, unguard: NftCommand[], withPolicy: (engine: PolicyEngine) => Promise<unknown>): Promise<void> {
  if (c.policy) await withPolicy(c.policy);
  else if (unguard.length) await applyGuard(unguard);
}

async function applyGuard(cmds: NftCommand[]): Promise<void> {
  const r = await applyNft(new NftTransaction().push(...cmds));
  if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'updating the port guard (table bridge nhi_cni) failed', r.stderr.trim());
}

/** Work started now and awaited later: its failure is kept until asked for, never an unhandled rejection. */
interface Started<T> {
  wait(): Promise<T>;
}
function started<T>(p: Promise<T>): Started<T> {
  const settled = p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }));
  return {
    async wait() {
      const r = await settled;
      if (!r.ok) throw r.error;
      return r.value;
    },
  };
}

/**
 * What DEL needs to take a port's guard away: the record's MAC and addresses,
 * else prevResult's (a record lost with the state dir), else the MAC the
 * addresses imply. The delete is exact only for what the ADD added.
 */
function portOf(hostVeth: string, rec: AttachmentRecord | undefined, prev: Result | undefined): GuardedPort {
  const cidrs = rec?.ips ?? prev?.ips?.map((i) => i.address) ?? [];
  const mac = rec?.mac ?? prev?.interfaces?.find((i) => i.sandbox)?.mac ?? macFor(cidrs.map((address) => ({ address })));
  return { hostVeth, mac, ips: cidrs.map((a) => a.split('/')[0]!), level: 'addresses' };
}

function prevHostVeth(prev: Result | undefined): string | undefined {
  const name = prev?.interfaces?.[1]?.name;
  return name && /^veth[0-9a-f]{8}$/.test(name) ? name : undefined;
}

/**
 * Removes an attachment: its pair, port guard, policy membership,
 * addresses and record. `ips` (from the record or prevResult) let the policy
 * drop the pod's addresses even when its state is gone.
 */
async function teardown(c: Chain, a: { hostVeth?: string | undefined; netns: string; ips: string[]; port?: GuardedPort }): Promise<void> {
  const { req } = c;
  const { containerId, ifname } = req.env;
  await removeLinks(a.hostVeth, a.netns, ifname);
  // The port guard goes in the same transaction as the policy change.
  const unguard = a.port ? guardDel(a.port) : [];
  await unguardWith(c, unguard, (engine) => engine.remove({ key: podKey(req.config.name, containerId, ifname), ips: a.ips.map((i) => i.split('/')[0]!), extra: unguard }));
  await c.ipam.del();
  new AttachmentStore(c.cfg.stateDir, req.config.name).remove(containerId, ifname);
}

export async function chainDel(c: Chain): Promise<void> {
  const { cfg, req } = c;
  const { containerId, ifname, netns } = req.env;
  const store = new AttachmentStore(cfg.stateDir, req.config.name);
  const rec = store.read(containerId, ifname);
  const prev = prevResultOf(req);
  const hostVeth = rec?.hostVeth ?? prevHostVeth(prev);
  const ips = rec?.ips ?? prev?.ips?.map((i) => i.address) ?? [];
  await teardown(c, { hostVeth, netns: netns || rec?.netns || '', ips, ...(hostVeth ? { port: portOf(hostVeth, rec, prev) } : {}) });
  toLedger(c, 'DEL', ips);
  log.info({ verb: 'DEL', ...subject(c), hostVeth, ips, durationMs: elapsedMs() }, 'attachment deleted');
}

export async function chainCheck(c: Chain): Promise<void> {
  const { cfg, req } = c;
  const { ifname, netns } = req.env;
  if (req.config.prevResult === undefined) throw new CniError(Code.InvalidConfig, 'Required prevResult missing', 'CHECK compares the node with the result of ADD');
  const prev = parsePrevResult(req.config.prevResult, req.version);
  const fail = (msg: string, details = '') => new CniError(Code.CheckFailed, msg, details);
  if (!isBridge(cfg.bridge)) throw fail(`bridge ${cfg.bridge} does not exist`);
  const hostVeth = prev.interfaces?.[1]?.name;
  if (!hostVeth || !linkExists(hostVeth)) throw fail(`host veth ${hostVeth ?? '(none in prevResult)'} does not exist`);
  if (linkMaster(hostVeth) !== cfg.bridge) throw fail(`host veth ${hostVeth} is not attached to ${cfg.bridge}`);
  checkNetns(netns);
  const r = await runNetnsBatch(netns, new IpBatch().add('addr', 'show', 'dev', ifname).add('route', 'show', 'dev', ifname, 'table', 'all'), true);
  if (r.exitCode !== 0) throw fail(`interface ${ifname} is missing in ${netns}`, batchFailure(r).message);
  const [addrs, routes] = parseJsonStream(r.stdout) as [
    { addr_info?: { local: string; prefixlen: number }[] }[],
    { dst: string; gateway?: string }[],
  ];
  const have = (addrs ?? []).flatMap((l) => l.addr_info ?? []).map((a) => `${a.local}/${a.prefixlen}`);
  for (const ip of prev.ips ?? []) {
    if (ip.interface !== undefined && ip.interface !== 2) continue;
    const want = parseCidr(ip.address)!;
    if (!have.some((h) => { const c2 = parseCidr(h); return !!c2 && equal(c2.ip, want.ip) && c2.prefix === want.prefix; })) {
      throw fail(`address ${ip.address} is missing on ${ifname} in ${netns}`);
    }
  }
  for (const rt of prev.routes ?? []) {
    const dst = rt.dst === '0.0.0.0/0' || rt.dst === '::/0' ? 'default' : rt.dst;
    const found = (routes ?? []).some((x) => (x.dst === dst || x.dst === rt.dst.replace(/\/(32|128)$/, '')) && (!rt.gw || x.gateway === rt.gw));
    if (!found) throw fail(`route to ${rt.dst}${rt.gw ? ` via ${rt.gw}` : ''} is missing in ${netns}`);
  }
  await c.ipam.check(prev);
  const mac = prev.interfaces?.find((i) => i.sandbox)?.mac;
  if (mac) await checkGuard({ hostVeth, mac, ips: (prev.ips ?? []).map((i) => i.address.split('/')[0]!), level: cfg.guard });
  if (c.policy) await c.policy.check(podKey(req.config.name, req.env.containerId, ifname));
  if (cfg.ipMasq) {
    for (const s of subnetsOf(prev.ips ?? [])) {
      if (!(await masqInstalled(req.config.name, s))) throw fail(`masquerade for ${s} is not installed (table inet nhi_cni)`);
    }
  }
  log.info({ verb: 'CHECK', ...subject(c), hostVeth, durationMs: elapsedMs() }, 'attachment checked');
}

/** ip -j -batch prints one JSON document per command, back to back. */
function parseJsonStream(text: string): unknown[] {
  const out: unknown[] = [];
  let depth = 0;
  let start = -1;
  let inStr = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (inStr) {
      if (ch === '\\') i++;
      else if (ch === '"') inStr = false;
      continue;
    }
    if (ch === '"') inStr = true;
    else if (ch === '[' || ch === '{') {
      if (depth++ === 0) start = i;
    } else if (ch === ']' || ch === '}') {
      if (--depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
    }
  }
  return out;
}

/**
 * GC: every attachment not in `cni.dev/valid-attachments` (and not held by an
 * ADD or DEL in flight) goes, all of them with one `ip -force -batch` for
 * their veths and one nft transaction for their guards and the policy; then
 * IPAM drops what no valid attachment holds. GC goes on after a failure and
 * reports everything at the end (SPEC.md "GC"); an attachment whose veth or
 * guard could not be removed keeps its record, so the next GC tries again.
 */
export async function chainGc(c: Chain): Promise<void> {
  const { cfg, req } = c;
  const valid = validAttachments(req.config);
  const errors: string[] = [];
  if (valid !== undefined) {
    const keep = new Set(valid.map((a) => `${a.containerId}\0${a.ifname}`));
    const store = new AttachmentStore(cfg.stateDir, req.config.name);
    const stale: { rec: AttachmentRecord; lock: RemovableLock }[] = [];
    for (const rec of store.list()) {
      if (keep.has(`${rec.containerId}\0${rec.ifname}`)) continue;
      // An attachment whose lock is held is an ADD or DEL in flight: its owner, not GC, decides.
      const lock = await store.lock(rec.containerId, rec.ifname, 0).catch(() => undefined);
      if (lock) stale.push({ rec, lock });
    }
    try {
      const links = new IpBatch();
      for (const { rec } of stale) if (linkExists(rec.hostVeth)) links.add('link', 'del', rec.hostVeth);
      if (!links.empty) await runHostBatch(links, false, true);
      const gone = stale.filter(({ rec }) => {
        if (!linkExists(rec.hostVeth)) return true;
        errors.push(`deleting ${rec.hostVeth} of ${rec.containerId}/${rec.ifname} failed`);
        return false;
      });
      const unguard = gone.flatMap(({ rec }) => guardDel(portOf(rec.hostVeth, rec, undefined)));
      try {
        await unguardWith(c, unguard, (engine) => engine.reconcile({ change: (pods) => keepValid(pods, req.config.name, valid), extra: unguard }));
        for (const { rec, lock } of gone) {
          store.remove(rec.containerId, rec.ifname);
          lock.releaseAndRemove();
          log.info({ verb: 'GC', network: req.config.name, containerId: rec.containerId, ifname: rec.ifname, hostVeth: rec.hostVeth }, 'stale attachment removed');
        }
      } catch (e) {
        errors.push((e as Error).message);
      }
    } finally {
      for (const { lock } of stale) lock.release();
    }
  }
  await c.ipam.gc(valid).catch((e: Error) => errors.push(e.message));
  if (errors.length) throw new CniError(Code.SystemFailure, 'GC could not remove everything', errors.join('; '));
}

export async function chainStatus(c: Chain): Promise<void> {
  const missing = ['ip', 'nsenter', ...(c.cfg.ipMasq ? ['nft'] : [])].filter((b) => !onPath(b));
  if (missing.length) throw new CniError(Code.NotAvailable, `required programs missing: ${missing.join(', ')}`, 'install iproute2, util-linux and nftables');
  if (linkExists(c.cfg.bridge) && !settledBridge(c.cfg.bridge)) {
    throw new CniError(Code.NotAvailable, `"${c.cfg.bridge}" exists but is not a bridge, so the bridge cannot be created`);
  }
  await c.ipam.status();
}

export function isBuiltinIpam(type: string): boolean {
  return BUILTIN_IPAM.includes(type);
}
