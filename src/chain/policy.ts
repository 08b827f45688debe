// The policy module: keeps the node's policy state (its pods, their
// identities and addresses, the policies last applied) and turns every change
// into one nft transaction. Shared by nhi-cni and the chained nhi-policy.
//   <stateDir>/policy-state.json         the node's pods and which compile they
//                                        are under; rewritten by every change
//   <stateDir>/policy-compiled-<id>.json a compile: policies, audit options,
//                                        profiles, and per group of alike pods
//                                        its sets and profile chains; written
//                                        once, when policies or groups change
//   <stateDir>/policy.dirty              present while the kernel may be ahead
//                                        of the files (a crash mid-change): the
//                                        next change re-applies everything
//   <stateDir>/policy.lock               an exclusive lock held from read to write
// What the kernel holds is never stored element by element: it follows from
// the pods and the compile (deriveDesired), so a pod's ADD reads and writes
// the pods, not every set of the node.
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, constants, lstatSync, readdirSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CniError, Code, firstOf } from '../cni/errors.js';
import { checkedPath } from '../cni/paths.js';
import { formatIssues } from '../cni/result.js';
import { refuseUnknownKeys } from '../cni/suggest.js';
import { parseIp } from '../net/ip.js';
import { withoutState } from './policy-lost-state.js';
import { removeStaleTemporaries, writeFileAtomic } from '../sys/files.js';
import { existsNoFollow, openNoFollow, readNoFollow, safeRoot } from '../sys/safe-path.js';
import { withLockAsync } from '../sys/lock.js';
import { ownerCommands, ownerConflict, ownerConflictInTable } from './policy-owner.js';
import { applyNft, listTable, NftTransaction, type NftCommand, type NftObject } from '../sys/nft.js';
import { ensureSysctl } from '../sys/sysfs.js';
import { crashPoint } from '../sys/testhooks.js';
import { trace as traceAt } from '../sys/trace.js';
import { classElems, classKey, compile, delta, deriveDesired, fastDelta, mapEntries, POLICY_LAYOUT, POLICY_TABLE, type AuditOptions, type Compiled, type CompiledIndex, type CompiledNames, type LocalPod } from '../policy/compile/index.js';
import type { Identity, Policy } from '../policy/model.js';
import type { GuardedPort } from './spoofcheck.js';
import { loadPolicyDir, parseManifestObjects } from '../policy/parse.js';

export const PolicyConfigInput = z.strictObject({
  dir: z.string().optional(),
  manifests: z.array(z.unknown()).optional(),
  audit: z.boolean().optional(),
  auditNamespaces: z.array(z.string()).optional(),
  auditPolicies: z.array(z.string()).optional(),
  /** A kubeconfig to fetch identities from the Kubernetes API (src/policy/k8s.ts reads it). */
  kubeconfig: z.string().optional(),
  /** The node agent's socket (`nhi-cni agent` writes it into the conflist); not used by ADD yet. */
  agentSocket: z.string().optional(),
});

export interface PolicyConfig {
  dir?: string;
  manifests?: unknown[];
  audit: AuditOptions;
  stateDir: string;
}

/** The `policy` section of a plugin config; undefined when there is none (no enforcement). */
export function loadPolicyConfig(raw: unknown, stateDir: string): PolicyConfig | undefined {
  if (raw === undefined) return undefined;
  // A typo must not leave a pod without enforcement: unknown keys are refused.
  if (raw !== null && typeof raw === 'object' && !Array.isArray(raw)) refuseUnknownKeys(raw, Object.keys(PolicyConfigInput.shape), 'policy');
  const p = PolicyConfigInput.safeParse(raw);
  if (!p.success) throw new CniError(Code.InvalidConfig, 'invalid policy configuration', formatIssues(p.error, 'policy'));
  const c = p.data;
  if (c.dir !== undefined) checkedPath(c.dir, 'policy.dir');
  if (c.agentSocket !== undefined) checkedPath(c.agentSocket, 'policy.agentSocket');
  const out: PolicyConfig = {
    audit: { all: c.audit === true, namespaces: c.auditNamespaces ?? [], policies: c.auditPolicies ?? [] },
    stateDir,
  };
  if (c.dir !== undefined) out.dir = c.dir;
  if (c.manifests !== undefined) out.manifests = c.manifests;
  return out;
}

/** Manifests are read at every ADD: a policy edit takes effect with the next pod, or with `policy sync`. */
export function loadPolicies(pc: PolicyConfig): Policy[] {
  const out: Policy[] = [];
  if (pc.dir) out.push(...loadPolicyDir(pc.dir));
  if (pc.manifests) out.push(...parseManifestObjects(pc.manifests, 'inline'));
  return out;
}

/**
 * What the manifests look like without reading them: each file's name, size,
 * inode and modification time, and the inline manifests. Checked at every ADD;
 * an edit changes it.
 */
export function manifestFingerprint(pc: PolicyConfig): string {
  const h = createHash('sha256');
  if (pc.dir) {
    let names: string[] = [];
    try {
      names = readdirSync(pc.dir).sort();
    } catch (e) {
      h.update(`error:${(e as NodeJS.ErrnoException).code}`);
    }
    for (const n of names) {
      try {
        const st = statSync(join(pc.dir, n), { bigint: true });
        h.update(`${n}\0${st.size}\0${st.ino}\0${st.mtimeNs}\0${st.ctimeNs}\n`);
      } catch {
        h.update(`${n}\0gone\n`);
      }
    }
  }
  h.update(JSON.stringify(pc.manifests ?? null));
  return h.digest('hex');
}

/**
 * The policies for this ADD: parsed again only when the manifests changed
 * since the policies last applied (parsing YAML and validating costs ~25 ms
 * in a fresh process; a fingerprint costs a stat per file). Undefined when
 * they did not change: "the ones last applied", which applyPolicy then reads
 * only if it has to compile.
 */
export function loadPoliciesCached(pc: PolicyConfig): Policy[] | undefined {
  const state = readPolicyState(pc.stateDir);
  if (state.compiled && state.fingerprint && state.fingerprint === manifestFingerprint(pc)) return undefined;
  return loadPolicies(pc);
}

export interface PolicyPod {
  network: string;
  containerId: string;
  ifname: string;
  ips: string[];
  identity?: Identity;
  /** nhi-policy: the port guard it installed (nhi-cni keeps it in the attachment record). */
  port?: GuardedPort;
}

/**
 * A compile as kept on disk, written once and never edited, in two files:
 * policy-compiled-<id>.json, what every change reads, and
 * policy-compiled-<id>.policies.json, read only to compile again or by the CLI.
 */
export interface CompiledState extends CompiledIndex {
  audit: AuditOptions;
  /** POLICY_LAYOUT of the code that wrote it. */
  layout?: number;
}
interface CompiledPolicies {
  policies: Policy[];
  /** Profile chain -> direction, policies and deny counter, for `policy stats`. */
  profiles: Compiled['profiles'];
}

/** policy-state.json. */
interface PodsFile {
  version: 2;
  /** The generation of the table these pods were last applied as (the element of set `gen`). */
  gen?: number;
  /** The id of the compile these pods are under; absent: none yet, the next change applies everything. */
  compiled?: string;
  /** manifestFingerprint() of the manifests the compile's policies came from. */
  fingerprint?: string;
  pods: Record<string, PolicyPod>;
}

/** The node's policy state as read: its pods and the compile they are under. */
export interface PolicyState {
  pods: Record<string, PolicyPod>;
  gen?: number;
  compiledId?: string;
  compiled?: CompiledState;
  fingerprint?: string;
  /** The compile's policies and profiles (read from disk on first use); empty without one. */
  readonly policies: Policy[];
  readonly profiles: Compiled['profiles'];
  names: CompiledNames;
  /** No state file at all (a new node, or a state directory that was lost). */
  absent?: true;
}

export const podKey = (network: string, containerId: string, ifname: string) => `${network}/${containerId}/${ifname}`;

/**
 * Puts a pod into the node's pods. An address it now holds may still be
 * listed for a pod whose DEL never came: that pod loses it, so nothing of its
 * access is inherited by the new holder.
 */
export function placePod(pods: Record<string, PolicyPod>, key: string, pod: PolicyPod): void {
  for (const [k, p] of Object.entries(pods)) if (k !== key && p.ips.some((a) => pod.ips.includes(a))) delete pods[k];
  pods[key] = pod;
}

/** GC: drops the network's pods that no valid attachment names. */
export function keepValid(pods: Record<string, PolicyPod>, network: string, valid: { containerId: string; ifname: string }[]): void {
  const keep = new Set(valid.map((a) => podKey(network, a.containerId, a.ifname)));
  for (const [k, p] of Object.entries(pods)) if (p.network === network && !keep.has(k)) delete pods[k];
}

const STATE_FILE = 'policy-state.json';
/** The set holding the table's generation (see applyPolicy). */
const GEN_SET = 'gen';
const COMPILED_PREFIX = 'policy-compiled-';
const compiledPath = (stateDir: string, id: string, part = '') => join(stateDir, `${COMPILED_PREFIX}${id}${part}.json`);
const ID = /^[0-9a-f]{16}$/;

/** The last state read, with the file's identity: one ADD reads the state twice (manifests, then under the lock). */
let lastRead: { path: string; stamp: string; state: PolicyState } | undefined;
/** Compile files read, by path: they never change once written. */
const compiledCache = new Map<string, unknown>();

/** A compile file; undefined when it is gone (replaced by a concurrent change after we read the pods, outside the lock). */
function readCompiledFile<T>(path: string): T | undefined {
  let c = compiledCache.get(path) as T | undefined;
  if (c) return c;
  try {
    c = JSON.parse(readNoFollow(path)) as T;
  } catch (e) {
    if (e instanceof CniError) throw e;
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CniError(Code.SystemFailure, 'cannot read the policy state', `${path}: ${(e as Error).message}`);
  }
  compiledCache.set(path, c);
  return c;
}

type AnyStateFile = Partial<PodsFile> & { policies?: Policy[]; names?: CompiledNames; profiles?: Compiled['profiles'] };

export function readPolicyState(stateDir: string): PolicyState {
  const path = join(stateDir, STATE_FILE);
  try {
    const st = lstatSync(path, { bigint: true });
    const stamp = `${st.ino}/${st.size}/${st.mtimeNs}/${st.ctimeNs}`;
    if (lastRead && lastRead.path === path && lastRead.stamp === stamp) return lastRead.state;
    const state = toState(stateDir, JSON.parse(readNoFollow(path)) as AnyStateFile);
    lastRead = { path, stamp, state };
    return state;
  } catch (e) {
    if (e instanceof CniError) throw e;
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CniError(Code.SystemFailure, 'cannot read the policy state', `${path}: ${(e as Error).message}`);
    return { pods: {}, policies: [], profiles: {}, names: { chains: [], sets: [] }, absent: true };
  }
}

function toState(stateDir: string, file: AnyStateFile): PolicyState {
  const pods = file.pods && typeof file.pods === 'object' ? file.pods : {};
  if (file.version !== 2) {
    // A state of the first layout (everything in one file): its pods, and its
    // policies and names so that the next change can re-apply and clean up.
    return { pods, policies: file.policies ?? [], profiles: file.profiles ?? {}, names: file.names ?? { chains: [], sets: [] } };
  }
  const id = typeof file.compiled === 'string' && ID.test(file.compiled) ? file.compiled : undefined;
  const compiled = id ? readCompiledFile<CompiledState>(compiledPath(stateDir, id)) : undefined;
  let rest: CompiledPolicies | undefined;
  const more = (): CompiledPolicies => {
    if (!compiled) return { policies: [], profiles: {} };
    rest ??= readCompiledFile<CompiledPolicies>(compiledPath(stateDir, id!, '.policies'));
    if (!rest) throw new CniError(Code.SystemFailure, 'the policy state changed while it was read', `${compiledPath(stateDir, id!, '.policies')} is gone; try again`);
    return rest;
  };
  const out: PolicyState = {
    pods,
    get policies() {
      return more().policies;
    },
    get profiles() {
      return more().profiles;
    },
    names: compiled?.names ?? { chains: [], sets: [] },
  };
  if (compiled) {
    out.compiled = compiled;
    out.compiledId = id!;
  }
  if (file.fingerprint) out.fingerprint = file.fingerprint;
  if (typeof file.gen === 'number' && Number.isInteger(file.gen)) out.gen = file.gen;
  return out;
}

/**
 * CHECK: the pod is in the node's policy state, and the kernel holds what
 * the state says for it - its verdict-map entries, profile chains and set
 * memberships. Catches a table flushed or edited by hand (a firewall reload,
 * `nft flush ruleset`); the next ADD, DEL or `policy sync` restores it.
 */
export async function checkPolicy(pc: PolicyConfig, key: string): Promise<void> {
  const fail = (msg: string, details: string) => new CniError(Code.CheckFailed, msg, details);
  const state = readPolicyState(pc.stateDir);
  const pod = state.pods[key];
  if (!pod) throw fail('the attachment is missing from the policy state', `no entry ${key} in ${pc.stateDir}/${STATE_FILE}`);
  if (!pod.identity) return;
  const e = state.compiled?.classIndex[classKey(pod.identity, state.compiled.labelKeys)];
  if (!state.compiled || !e) throw fail('the pod\'s workload is not in the policy state\'s last compile', `${key}: the next ADD or \`nhi-cni policy sync\` compiles it`);
  const table = await listPolicyTable();
  const fix = 'the next ADD or DEL, or `nhi-cni policy sync`, re-applies it';
  if (typeof table === 'string') throw fail(`table inet ${POLICY_TABLE} is missing`, `${table}; ${fix}`);
  // Set and map elements as JSON, the form the compiler (src/policy/compile/) gives them.
  const elems = new Map<string, Set<string>>();
  const chains = new Set<string>();
  for (const o of table) {
    const s = o.map ?? o.set;
    if (s?.name) elems.set(s.name, new Set((s.elem ?? []).map((x) => JSON.stringify(x))));
    if (o.chain?.name) chains.add(o.chain.name);
  }
  const missing: string[] = [];
  for (const ip of pod.ips.filter((a) => parseIp(a) !== undefined)) {
    for (const [map, chain] of mapEntries(e, ip)) {
      if (!chains.has(chain)) missing.push(`chain ${chain}`);
      if (!elems.get(map)?.has(JSON.stringify([ip, { jump: { target: chain } }]))) missing.push(`${map} ${ip} -> ${chain}`);
    }
    for (const [name, elem] of classElems(e, ip)) if (!elems.get(name)?.has(elem)) missing.push(`set ${name} ${elem}`);
  }
  for (const [name, elem] of state.compiled.podElems[key] ?? []) if (!elems.get(name)?.has(elem)) missing.push(`set ${name} ${elem}`);
  if (missing.length) throw fail('the pod\'s policy is not in the kernel as the policy state says', `${key}: missing ${firstOf(missing)}; ${fix}`);
}

/** The pods as the compiler takes them (all, or those whose key `only` keeps); an address that does not parse is left out. */
export function localPods(pods: Record<string, PolicyPod>, only: (key: string) => boolean = () => true): LocalPod[] {
  return Object.entries(pods)
    .filter(([id]) => only(id))
    .map(([id, p]) => ({ id, ips: p.ips.filter((a) => parseIp(a) !== undefined), ...(p.identity ? { identity: p.identity } : {}) }));
}

export type TableObject = NftObject;

/** The objects of the kernel's policy table, or why it cannot be listed. Never on the way of an ADD. */
const listPolicyTable = () => listTable('inet', POLICY_TABLE);

/**
 * The profile chains and sets in the kernel's table, by name: after a crash
 * mid-change the kernel may hold objects no file names, which a full apply
 * must delete too. Read only then, never on the way of a normal change.
 */
async function kernelNames(): Promise<CompiledNames> {
  const table = await listPolicyTable();
  const out: CompiledNames = { chains: [], sets: [] };
  if (typeof table === 'string') return out;
  for (const o of table) {
    if (o.chain?.name?.startsWith('pr_')) out.chains.push(o.chain.name);
    if (o.set?.name && /^[pnw]_/.test(o.set.name)) out.sets.push(o.set.name);
  }
  return out;
}

/**
 * Applies a change to the node's pods: under the policy lock, reads the
 * state, lets `change` edit its pods, and applies the difference to the
 * kernel (with `extra`, e.g. the ADD's masquerade commands) in one nft run:
 *   - same policies, pods of known groups: their own elements, no compile;
 *   - otherwise a compile, and the difference from what the kernel holds;
 *   - after a policy change, a crash, or a difference the kernel refuses: the
 *     whole state, flushed and refilled.
 * The files are written only after the kernel took the transaction.
 * `policies` undefined keeps the ones last applied (DEL and GC must work
 * even when a manifest was broken meanwhile).
 */
export async function applyPolicy(
  pc: PolicyConfig,
  change: (pods: Record<string, PolicyPod>) => void,
  policies: Policy[] | undefined,
  extra: NftCommand[] = [],
  /** Re-apply the whole state even when the policies did not change (`policy sync`: heals a drifted kernel). */
  full = false,
  /** A DEL's pod addresses: what to take out of the kernel if the state is gone (see withoutState). */
  forget?: string[],
): Promise<Compiled | undefined> {
  // Same-bridge pod traffic is bridged, not routed: br_netfilter hands it to
  // the inet forward hook only with these on.
  ensureSysctl('net/bridge/bridge-nf-call-iptables', '1');
  ensureSysctl('net/bridge/bridge-nf-call-ip6tables', '1');
  safeRoot(pc.stateDir, 'stateDir');
  return withLockAsync(join(pc.stateDir, 'policy.lock'), async () => {
    const trace = (w: string) => traceAt(`policy ${w}`);
    trace('locked');
    removeStaleTemporaries(pc.stateDir);
    const state = readPolicyState(pc.stateDir);
    const dirtyPath = join(pc.stateDir, 'policy.dirty');
    const crashed = existsNoFollow(dirtyPath);
    // A marker without a state: the first change crashed, and the kernel
    // holds only what it applied; the normal path re-applies everything.
    if (state.absent && !crashed) {
      const table = await listPolicyTable();
      // A table another state dir owns is that one's, not a state we lost:
      // nothing of ours is in it, so a DEL has only its own commands to apply.
      const conflict = typeof table === 'string' ? undefined : ownerConflictInTable(pc.stateDir, table);
      if (conflict && !forget) throw conflict;
      if (await withoutState(join(pc.stateDir, STATE_FILE), conflict ? [] : table, forget, extra)) return undefined;
    }
    trace(`state read${crashed ? ' (an earlier change did not finish: re-applying everything)' : ''}`);
    const before = state.pods;
    const pods = { ...before };
    change(pods);
    // A state that never reached the kernel and stays empty has nothing to
    // apply (a DEL after a refused ADD must not need the table).
    if (!full && !crashed && state.gen === undefined && !Object.keys(before).length && !Object.keys(pods).length) {
      // The caller's own commands (a port guard to remove) still go in.
      if (extra.length) {
        const r = await applyNft(new NftTransaction().push(...extra));
        if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'applying nftables changes failed', r.stderr.trim());
      }
      return undefined;
    }
    const prev = state.compiled;
    const fingerprint = policies ? manifestFingerprint(pc) : state.fingerprint;
    // The table's generation: each transaction moves it on, and one that only
    // changes part of the table first deletes the generation it expects. A
    // table flushed or re-created by hand since (a firewall reload, `nft flush
    // ruleset`) makes that delete fail, and the whole state is re-applied.
    const gen = state.gen;
    const nextGen = ((gen ?? 0) % 0x7ffffffe) + 1;
    const writePods = (compiled: string | undefined) => {
      const f: PodsFile = { version: 2, gen: nextGen, pods };
      if (compiled) f.compiled = compiled;
      if (fingerprint) f.fingerprint = fingerprint;
      writeFileAtomic(join(pc.stateDir, STATE_FILE), JSON.stringify(f));
    };
    const T = { family: 'inet', table: POLICY_TABLE, name: GEN_SET };
    const apply = async (cmds: NftCommand[], whole = false) => {
      // Marked before the kernel changes, cleared once the files say what it holds.
      closeSync(openNoFollow(dirtyPath, constants.O_WRONLY | constants.O_CREAT));
      const genCmds: NftCommand[] = whole
        ? [{ add: { set: { ...T, type: 'mark' } } }, { flush: { set: T } }, { add: { element: { ...T, elem: [nextGen] } } }]
        : [{ delete: { element: { ...T, elem: [gen] } } }, { add: { element: { ...T, elem: [nextGen] } } }];
      const own = ownerCommands(pc.stateDir, whole);
      return applyNft(new NftTransaction().push(...extra, ...(whole ? [...cmds, ...own, ...genCmds] : [...own, ...genCmds, ...cmds])));
    };
    const done = () => unlinkSync(dirtyPath);

    // Undefined policies are the ones last applied: read only if needed.
    const same = !full && !crashed && prev !== undefined && gen !== undefined && prev.layout === POLICY_LAYOUT &&
      JSON.stringify(prev.audit) === JSON.stringify(pc.audit) &&
      (policies === undefined || JSON.stringify(state.policies) === JSON.stringify(policies));
    // change() replaces or deletes entries, never edits them in place.
    const changed = (k: string) => before[k] !== pods[k];
    let refused = false;
    if (same) {
      const removed = localPods(before, changed);
      const added = localPods(pods, changed);
      const cmds = fastDelta(prev, removed, added);
      trace(`fast delta computed (${cmds ? `${cmds.length} commands` : 'a new group: compile'})`);
      if (cmds) {
        const r = await apply(cmds);
        trace(`fast delta (${r.exitCode === 0 ? 'ok' : 'refused'})`);
        if (r.exitCode === 0) {
          crashPoint('policy-kernel');
          writePods(state.compiledId);
          done();
          trace('state written');
          return undefined;
        }
        refused = true;
      }
    }
    const previous = prev?.names ?? state.names;
    // After a crash, or for `policy sync`, objects no file names are looked up in the kernel.
    const names = crashed || full ? mergeNames(previous, await kernelNames()) : previous;
    const pols = policies ?? state.policies;
    const compiled = compile(pols, localPods(pods), pc.audit, names);
    trace(`compiled (${Object.keys(pods).length} pods)`);
    let r;
    if (same && !refused) {
      const was = deriveDesired(localPods(before), prev);
      if (was) {
        r = await apply(delta(was, compiled));
        trace(`delta applied (${r.exitCode === 0 ? 'ok' : `refused: ${r.stderr.trim().slice(0, 200)}`})`);
      }
    }
    if (!r || r.exitCode !== 0) r = await apply(compiled.commands, true);
    if (r.exitCode !== 0) {
      // Nothing of it reached the kernel (a transaction is all or nothing).
      done();
      const conflict = await ownerConflict(pc.stateDir);
      if (conflict) throw conflict;
      throw new CniError(Code.SystemFailure, 'applying the policy to nftables failed', r.stderr.trim());
    }
    trace('applied');
    crashPoint('policy-kernel');
    const id = randomBytes(8).toString('hex');
    const next: CompiledState = {
      layout: POLICY_LAYOUT, audit: pc.audit, names: compiled.names, classIndex: compiled.classIndex, labelKeys: compiled.labelKeys, podElems: compiled.podElems,
      desired: { counters: compiled.desired.counters },
    };
    writeFileAtomic(compiledPath(pc.stateDir, id, '.policies'), JSON.stringify({ policies: pols, profiles: compiled.profiles } satisfies CompiledPolicies));
    writeFileAtomic(compiledPath(pc.stateDir, id), JSON.stringify(next));
    writePods(id);
    done();
    // Earlier compiles: nothing refers to them any more.
    for (const f of readdirSync(pc.stateDir)) {
      if (f.startsWith(COMPILED_PREFIX) && !f.startsWith(`${COMPILED_PREFIX}${id}.`)) unlinkSync(join(pc.stateDir, f));
    }
    trace('state written');
    return compiled;
  });
}

/** DEL: takes a pod out of the node's policy, by its addresses when its state is gone; `extra` (its port guard's removal) goes in the same transaction. */
export async function removePolicyPod(pc: PolicyConfig, key: string, ips: string[], extra: NftCommand[] = []): Promise<void> {
  await applyPolicy(pc, (pods) => delete pods[key], undefined, extra, false, ips);
}

function mergeNames(a: CompiledNames, b: CompiledNames): CompiledNames {
  return { chains: [...new Set([...a.chains, ...b.chains])], sets: [...new Set([...a.sets, ...b.sets])] };
}
