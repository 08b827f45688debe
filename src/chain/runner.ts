// The nhi-cni chain: IPAM, bridge, veth, masquerade, the port guard and
// policy as one ADD in one process. The modules (module.ts; the list is CHAIN
// below, in order) contribute to one Plan, which the runner applies with one
// `ip -batch` on the node, one `ip -batch` in the pod (plus a sysctl process
// only for IPv6 or a runtime-chosen MAC) and one nft transaction. An ADD that
// fails undoes what it did; DEL undoes an ADD whatever state it reached; GC
// drops what no valid attachment owns: all three take an attachment down with
// the modules' `del` parts, applied in one plan. Over 400 lines: the verbs'
// orchestration (the ADD's retries and overlap, rollback, GC's merging) shares
// private helpers that no module needs.
import { join } from 'node:path';
import { CniError, Code } from '../cni/errors.js';
import { parsePrevResult, type Result } from '../cni/result.js';
import { formatIp } from '../net/ip.js';
import { onPath, run, spawnCount } from '../sys/exec.js';
import { trace } from '../sys/trace.js';
import { batchFailure, IpBatch, runHostBatch, runNetnsBatch } from '../sys/ip.js';
import { applyNft, NftTransaction, type NftCommand } from '../sys/nft.js';
import { bootId, linkExists, ownNetnsId, setLinkDown, setLinkUp } from '../sys/sysfs.js';
import { prevResultOf } from '../cni/request.js';
import { crashPoint } from '../sys/testhooks.js';
import type { RemovableLock } from '../sys/lock.js';
import { validAttachments } from '../cni/attachments.js';
import { log } from '../log.js';
import { bridge, bridgeInterface, gatewayOf, settledBridge } from './bridge.js';
import { BUILTIN_IPAM, DEFAULT_RUN_DIR } from './config.js';
import { ipam } from './ipam/module.js';
import { appendLedger, type LedgerEntry } from './ledger.js';
import { masq } from './masq.js';
import { addedIps, guardedPort, subject, type AddContext, type Chain, type ChainModule, type TeardownContext } from './module.js';
import { Plan } from './plan.js';
import { policy } from './policy.js';
import { AttachmentStore, RunCache, type AttachmentRecord } from './state.js';
import { checkNetns, GONE_IN_POD, hostVethInterface, hostVethName, macFor, veth } from './veth.js';
import { guardAdd, guardDel, macspoof, recordedPort, type GuardedPort } from './spoofcheck.js';

export type { Chain } from './module.js';

/**
 * The chain, in order. ADD prepares and plans in this order (IPAM first: the
 * others need its addresses); the plan's parts then run as one batch each;
 * CHECK checks in this order.
 */
export const CHAIN: readonly ChainModule[] = [ipam, bridge, veth, masq, macspoof, policy];

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

/** Milliseconds since the process started: the whole call as the runtime waited for it. */
const elapsedMs = () => Math.round(performance.now());

/** Test hook (sys/testhooks.ts): NHI_CNI_CRASH_AFTER=<step> kills the ADD right after that step. */
const step = crashPoint;

export const ADD_STEPS = ['ipam', 'record', 'host', 'pod-sysctl', 'pod', 'nft'] as const;

function runCache(): RunCache {
  return new RunCache(process.env.NHI_CNI_RUN_DIR || DEFAULT_RUN_DIR, ownNetnsId());
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

  // The caller holds the attachment's lock: a record here is a completed ADD
  // or one that was killed, never one in progress.
  const prior = store.read(containerId, ifname);
  if (prior?.result) return repeatedAdd(c, prior as AttachmentRecord & { result: Result });
  if (prior) {
    log.warn({ verb: 'ADD', ...subject(c), hostVeth: prior.hostVeth }, 'removing what an earlier, interrupted ADD left');
    await teardown(teardownOf(c, { hostVeth: prior.hostVeth, netns: '', ips: prior.ips, ports: [recordedPort(prior.hostVeth, prior, undefined)] }));
  }

  trace('chain start');
  const x: AddContext = { c, cache: runCache(), hostVeth: hostVethName(), mac: '', bridgeSeen: false };
  for (const m of CHAIN) await m.prepare?.(x);
  trace('ipam done');
  step('ipam');
  const ips = addedIps(x);
  const rec: AttachmentRecord = {
    containerId, ifname, netns, bridge: cfg.bridge, hostVeth: x.hostVeth,
    ips: ips.map((i) => i.address), created: new Date().toISOString(),
  };
  const boot = bootId();
  if (boot) rec.boot = boot;
  x.mac = rec.mac = cfg.mac ?? macFor(ips);
  let stage = 'ipam';
  let nftDone: Started<void> | undefined;
  let nftApplied = false;
  /** The host veth name the port guard was installed for. */
  const guarded = x.hostVeth;
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
    // waiting in the kernel (~20 ms here): it runs beside the node's batch and
    // the pod's. The node side of the pair comes up only after all three: no
    // frame leaves the pod before its guard and policy are in place.
    let plan!: Plan;
    // Up to three tries: another ADD may create the bridge between our look
    // and our batch, or (once in 4 billion) pick the same veth name. A retry
    // plans again; its nft part is the first plan's, already under way.
    for (let attempt = 0; ; attempt++) {
      plan = await planAdd(x);
      if (!nftDone) nftDone = started(applyKernel(c, plan).then(() => { nftApplied = true; }));
      const r = await runHostBatch(plan.host);
      if (r.exitCode === 0) break;
      const f = batchFailure(r);
      const exists = /File exists/.test(f.message);
      if (attempt < 2 && exists && f.line === x.bridgeCreateLine && settledBridge(cfg.bridge)) {
        x.bridgeSeen = true;
        continue;
      }
      if (exists && f.line === x.veth?.createLine) {
        if (attempt < 2 && linkExists(x.hostVeth)) {
          x.hostVeth = hostVethName();
          store.write({ ...rec, hostVeth: x.hostVeth });
          continue;
        }
        vethOurs = false;
        throw new CniError(Code.SystemFailure, `container veth name ("${ifname}") peer provided ("${x.hostVeth}") already exists`,
          `the pod's namespace already has an interface ${ifname}`);
      }
      throw new CniError(Code.SystemFailure, 'setting up the bridge and veth pair failed', f.message);
    }
    rec.hostVeth = x.hostVeth;
    stage = 'host';
    step('host');
    if (plan.podSysctls.length) {
      const r = await run('nsenter', [`--net=${netns}`, '--', 'sysctl', '-q', '-e', '-w', ...plan.podSysctls]);
      if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'setting sysctls in the pod failed', r.stderr.trim());
    }
    step('pod-sysctl');
    // The pod's batch runs beside the nft commit: its interface comes up, but
    // the node side is down (plan.up), so nothing it sends goes anywhere yet.
    const pr = await runNetnsBatch(netns, plan.pod);
    if (pr.exitCode !== 0) throw new CniError(Code.SystemFailure, 'configuring the pod interface failed', batchFailure(pr).message);
    stage = 'pod';
    step('pod');
    await nftDone!.wait();
    if (guarded !== x.hostVeth) {
      // The veth got another name on a retry (a name clash): move the guard to it.
      await applyGuard([...guardDel(guardedPort(x, guarded)), ...guardAdd(guardedPort(x))]);
    }
    step('nft');
    for (const l of plan.up) {
      try {
        setLinkUp(l);
      } catch (e) {
        throw new CniError(Code.SystemFailure, `bringing ${l} up failed`, (e as Error).message);
      }
    }
    for (const a of plan.after) a();

    const result: Result = {
      interfaces: [bridgeInterface(cfg), hostVethInterface(x.hostVeth), { name: ifname, mac: x.veth!.containerMac, sandbox: netns }],
      ips: ips.map((ip) => ({
        ...ip,
        interface: 2,
        ...(cfg.isGateway && !ip.gateway ? { gateway: formatIp(gatewayOf(ip).ip) } : {}),
      })),
    };
    if (x.veth!.routes.length) result.routes = x.veth!.routes;
    const dns = cfg.dns ?? x.ipam?.result.dns;
    if (dns) result.dns = dns;
    // The attachment is complete: a repeated ADD now gets this result.
    store.write({ ...rec, result });
    toLedger(c, 'ADD', rec.ips);
    log.info({ verb: 'ADD', ...subject(c), hostVeth: x.hostVeth, ips: rec.ips, processes: spawnCount(), durationMs: elapsedMs() }, 'attachment added');
    return result;
  } catch (e) {
    log.warn({ verb: 'ADD', ...subject(c), stage, error: (e as Error).message }, 'ADD failed; rolling back');
    // A transaction still in flight is waited for, so that nothing it adds outlives the rollback.
    const nftError = await nftDone?.wait().then(() => undefined, (err: unknown) => err);
    // A policy change that never got its lock changed nothing; any other may have reached the kernel.
    const touched = nftDone !== undefined && (nftApplied || !(nftError instanceof CniError && nftError.code === Code.TryAgainLater));
    // The rollback is the modules' teardown of what this ADD reached, each step
    // tolerating what is already gone; the record goes last.
    await teardown(teardownOf(c, {
      hostVeth: vethOurs ? x.hostVeth : undefined,
      netns: stage === 'ipam' || stage === 'record' ? '' : netns,
      ips: rec.ips,
      ports: touched ? [guardedPort(x, guarded), ...(guarded !== x.hostVeth ? [guardedPort(x)] : [])] : [],
      nft: touched,
    }), { bestEffort: true });
    throw e;
  }
}

/** The modules' ADD parts, in the chain's order, in one plan. */
export async function planAdd(x: AddContext): Promise<Plan> {
  const plan = new Plan();
  for (const m of CHAIN) await m.add(x, plan);
  return plan;
}

/** A teardown context for this call's attachment. */
function teardownOf(c: Chain, t: { hostVeth: string | undefined; netns: string; ips: string[]; ports: GuardedPort[]; nft?: boolean }): TeardownContext {
  const { containerId, ifname } = c.req.env;
  return { c, containerId, ifname, nft: true, release: true, ...t, ...(t.hostVeth ? { hostVeth: t.hostVeth } : {}) };
}

/** The modules' teardown parts for one attachment, in one plan. */
export function teardownPlan(t: TeardownContext): Plan {
  const plan = new Plan();
  for (const m of CHAIN) m.del(t, plan);
  return plan;
}

/**
 * Takes one attachment down: its links (node side, or inside the pod) and its
 * port guard and policy membership (one nft transaction) - side by side once
 * the node side is down, else links first - then IPAM's release and the
 * record. Fails when a step fails, except in a rollback (`bestEffort`), which
 * goes on and keeps the ADD's own error.
 */
async function teardown(t: TeardownContext, o: { bestEffort?: boolean } = {}): Promise<void> {
  const plan = teardownPlan(t);
  const attempt = async (f: () => Promise<void>) => {
    try {
      await f();
    } catch (e) {
      if (!o.bestEffort) throw e;
    }
  };
  if (cutOffPod(plan)) {
    // The pod sends nothing any more: its links, guard and policy go at once.
    const [links, kernel] = await Promise.allSettled([attempt(() => removeLinks(t, plan)), attempt(() => applyKernel(t.c, plan))]);
    for (const r of [links, kernel]) if (r.status === 'rejected') throw r.reason;
  } else {
    // Links first: the guard and policy stay while the pod can still send.
    await attempt(() => removeLinks(t, plan));
    await attempt(() => applyKernel(t.c, plan));
  }
  for (const r of plan.release) await attempt(r);
  new AttachmentStore(t.c.cfg.stateDir, t.c.req.config.name).remove(t.containerId, t.ifname);
}

/**
 * Takes the plan's node-side links down; true when the pod is cut off from
 * the node (nothing it sends arrives) or has no link left there. A pod whose
 * pair is known only from inside its namespace is not.
 */
function cutOffPod(plan: Plan): boolean {
  if (!plan.pod.empty) return false;
  try {
    for (const l of plan.down) setLinkDown(l);
    return true;
  } catch {
    return false;
  }
}

async function removeLinks(t: TeardownContext, plan: Plan): Promise<void> {
  if (!plan.host.empty) {
    const r = await runHostBatch(plan.host);
    const left = plan.verify.map((v) => v()).filter(Boolean);
    if (r.exitCode !== 0 && left.length) throw new CniError(Code.SystemFailure, left.join('; '), batchFailure(r).message);
  }
  if (!plan.pod.empty) {
    const r = await runNetnsBatch(t.netns, plan.pod);
    if (r.exitCode !== 0 && !GONE_IN_POD.test(r.stderr)) {
      throw new CniError(Code.SystemFailure, `deleting ${t.ifname} in ${t.netns} failed`, batchFailure(r).message);
    }
  }
}

/**
 * The plan's one nft transaction: its commands (port guards, masquerade) and,
 * with enforcement on, the policy engine's change with them - so that an
 * ADD's pod has its policy before ADD returns, and a DEL's guard and policy
 * membership go together.
 */
async function applyKernel(c: Chain, plan: Plan): Promise<void> {
  const { changes, forget, policies } = plan.policy;
  if (c.policy && (changes.length || policies || plan.nft.commands.length)) {
    await c.policy.reconcile({
      ...(changes.length ? { change: (pods) => { for (const f of changes) f(pods); } } : {}),
      ...(policies ? { policies } : {}), ...(forget ? { forget } : {}),
      extra: plan.nft.commands,
    });
    return;
  }
  if (c.policy || !plan.nft.commands.length) return;
  const r = await applyNft(plan.nft);
  if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'installing nftables state failed', r.stderr.trim());
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

function prevHostVeth(prev: Result | undefined): string | undefined {
  const name = prev?.interfaces?.[1]?.name;
  return name && /^veth[0-9a-f]{8}$/.test(name) ? name : undefined;
}

export async function chainDel(c: Chain): Promise<void> {
  const { cfg, req } = c;
  const { containerId, ifname, netns } = req.env;
  const rec = new AttachmentStore(cfg.stateDir, req.config.name).read(containerId, ifname);
  const prev = prevResultOf(req);
  const hostVeth = rec?.hostVeth ?? prevHostVeth(prev);
  const ips = rec?.ips ?? prev?.ips?.map((i) => i.address) ?? [];
  await teardown(teardownOf(c, { hostVeth, netns: netns || rec?.netns || '', ips, ports: hostVeth ? [recordedPort(hostVeth, rec, prev)] : [] }));
  toLedger(c, 'DEL', ips);
  log.info({ verb: 'DEL', ...subject(c), hostVeth, ips, durationMs: elapsedMs() }, 'attachment deleted');
}

export async function chainCheck(c: Chain): Promise<void> {
  const { req } = c;
  if (req.config.prevResult === undefined) throw new CniError(Code.InvalidConfig, 'Required prevResult missing', 'CHECK compares the node with the result of ADD');
  const prev = parsePrevResult(req.config.prevResult, req.version);
  const hostVeth = prev.interfaces?.[1]?.name;
  if (!hostVeth) throw new CniError(Code.CheckFailed, 'host veth (none in prevResult) does not exist');
  for (const m of CHAIN) await m.check({ c, prev, hostVeth });
  log.info({ verb: 'CHECK', ...subject(c), hostVeth, durationMs: elapsedMs() }, 'attachment checked');
}

/**
 * GC: every attachment not in `cni.dev/valid-attachments` (and not held by an
 * ADD or DEL in flight) goes: the modules' teardown parts of all of them, with
 * one `ip -force -batch` for their veths and one nft transaction for their
 * guards and the policy (whose own GC part keeps only the valid pods); then
 * IPAM drops what no valid attachment holds. GC goes on after a failure and
 * reports everything at the end (SPEC.md "GC"); an attachment whose veth or
 * guard could not be removed keeps its record, so the next GC tries again.
 */
export async function chainGc(c: Chain): Promise<void> {
  const { cfg, req } = c;
  const valid = validAttachments(req.config);
  const errors: string[] = [];
  const plan = new Plan();
  for (const m of CHAIN) m.gc?.({ c, valid }, plan);
  if (valid !== undefined) {
    const keep = new Set(valid.map((a) => `${a.containerId}\0${a.ifname}`));
    const store = new AttachmentStore(cfg.stateDir, req.config.name);
    const stale: { rec: AttachmentRecord; lock: RemovableLock; plan: Plan }[] = [];
    for (const rec of store.list()) {
      if (keep.has(`${rec.containerId}\0${rec.ifname}`)) continue;
      // An attachment whose lock is held is an ADD or DEL in flight: its owner, not GC, decides.
      const lock = await store.lock(rec.containerId, rec.ifname, 0).catch(() => undefined);
      if (!lock) continue;
      // Their kernel parts only: the policy's GC part covers their membership, IPAM's gc their addresses.
      const t: TeardownContext = { c, containerId: rec.containerId, ifname: rec.ifname, hostVeth: rec.hostVeth, netns: '', ips: rec.ips, ports: [recordedPort(rec.hostVeth, rec, undefined)], nft: false, release: false };
      stale.push({ rec, lock, plan: teardownPlan(t) });
    }
    try {
      const links = new IpBatch();
      for (const s of stale) for (const l of s.plan.host.lines) links.add(...l);
      if (!links.empty) await runHostBatch(links, false, true);
      const gone = stale.filter((s) => {
        const left = s.plan.verify.map((v) => v()).filter(Boolean);
        errors.push(...left.map((l) => `${l} (${s.rec.containerId}/${s.rec.ifname})`));
        return !left.length;
      });
      for (const s of gone) plan.nft.push(...s.plan.nft.commands);
      try {
        await applyKernel(c, plan);
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
  for (const r of plan.release) await r().catch((e: Error) => errors.push(e.message));
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
