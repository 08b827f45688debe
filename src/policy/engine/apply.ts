// reconcile: one change of the node's policy state, applied to the kernel in
// one nft transaction under the policy lock. The paths, cheapest first:
//   fast   same policies, peers and options, pods of known groups: only those
//          pods' own elements, no compile (fastDelta)
//   delta  otherwise a compile, and the difference from what the kernel
//          holds (derived from the pods and the previous compile's index)
//   full   after a policy change, a crash (dirty marker), a generation the
//          kernel does not hold, or a difference the kernel refuses: the whole
//          state, flushed and refilled
// The files are written only after the kernel took the transaction; a refused
// transaction changes neither the kernel nor the files.
import { join } from 'node:path';
import { CniError, Code } from '../../cni/errors.js';
import type { NftCommand } from '../../sys/nft.js';
import { safeRoot } from '../../sys/safe-path.js';
import { withLockAsync } from '../../sys/lock.js';
import { crashPoint } from '../../sys/testhooks.js';
import { trace as traceAt } from '../../sys/trace.js';
import { compile, delta, deriveDesired, fastDelta, POLICY_LAYOUT, POLICY_TABLE, type Compiled, type CompiledNames } from '../compile/index.js';
import type { Policy } from '../model.js';
import { manifestFingerprint, type PolicyConfig } from './config.js';
import type { PolicyKernel } from './kernel.js';
import { withoutState } from './lost-state.js';
import { ownerCommands, ownerConflict, ownerConflictInTable } from './owner.js';
import { cleanRemote, compilerPods, type Pods, type RemotePeer } from './pods.js';
import { STATE_FILE, type PolicyStore, type StateFile, type StoredState } from './store.js';

/** What the engine works with: its configuration, its state directory, its kernel. */
export interface EngineContext {
  config: PolicyConfig;
  store: PolicyStore;
  kernel: PolicyKernel;
}

export interface ReconcileOptions {
  /** Edits this node's pods (replace or delete entries, never edit one in place); none: the pods stay. */
  change?: (pods: Pods) => void;
  /** The policies to apply; undefined: the ones last applied (DEL and GC must work even when a manifest is broken meanwhile). */
  policies?: Policy[];
  /** The caller's own commands (an ADD's port guard and masquerade), in the same transaction. */
  extra?: NftCommand[];
  /** Re-apply the whole state even when nothing changed (`policy sync`: heals a drifted kernel). */
  full?: boolean;
  /** A DEL's pod addresses: what to take out of the kernel if the state is gone (see withoutState). */
  forget?: string[];
  /** Other nodes' pods, as peers; undefined: the ones last stored. */
  remote?: RemotePeer[];
}

/** How a change reached the kernel (see the top of this file); `nothing`: only `extra`, if any; `without-state`: a DEL by addresses. */
export type ReconcilePath = 'nothing' | 'without-state' | 'fast' | 'delta' | 'full';

export interface ReconcileResult {
  path: ReconcilePath;
  /** The compile applied (paths delta and full). */
  compiled?: Compiled;
}

/** The set holding the table's generation. */
const GEN_SET = 'gen';
const GEN = { family: 'inet', table: POLICY_TABLE, name: GEN_SET };

const same = (a: unknown, b: unknown) => JSON.stringify(a) === JSON.stringify(b);

/**
 * The table's generation: each transaction moves it on, and one that only
 * changes part of the table first deletes the generation it expects. A table
 * flushed or re-created by hand since (a firewall reload, `nft flush ruleset`)
 * makes that delete fail, and the whole state is re-applied.
 */
function generationCommands(gen: number | undefined, next: number, whole: boolean): NftCommand[] {
  return whole
    ? [{ add: { set: { ...GEN, type: 'mark' } } }, { flush: { set: GEN } }, { add: { element: { ...GEN, elem: [next] } } }]
    : [{ delete: { element: { ...GEN, elem: [gen] } } }, { add: { element: { ...GEN, elem: [next] } } }];
}

/**
 * The profile chains and sets in the kernel's table, by name: after a crash
 * mid-change the kernel may hold objects no file names, which a full apply
 * must delete too. Read only then, never on the way of a normal change.
 */
async function kernelNames(kernel: PolicyKernel): Promise<CompiledNames> {
  const table = await kernel.listPolicyTable();
  const out: CompiledNames = { chains: [], sets: [] };
  if (typeof table === 'string') return out;
  for (const o of table) {
    if (o.chain?.name?.startsWith('pr_')) out.chains.push(o.chain.name);
    if (o.set?.name && /^[pnw]_/.test(o.set.name)) out.sets.push(o.set.name);
  }
  return out;
}

const mergeNames = (a: CompiledNames, b: CompiledNames): CompiledNames =>
  ({ chains: [...new Set([...a.chains, ...b.chains])], sets: [...new Set([...a.sets, ...b.sets])] });

export async function reconcile(ctx: EngineContext, opts: ReconcileOptions = {}): Promise<ReconcileResult> {
  const { config, store, kernel } = ctx;
  kernel.prepare();
  safeRoot(config.stateDir, 'stateDir');
  return withLockAsync(store.lockPath, () => locked(ctx, opts));
}

async function locked({ config, store, kernel }: EngineContext, opts: ReconcileOptions): Promise<ReconcileResult> {
  const { policies, extra = [], full = false, forget } = opts;
  const trace = (w: string) => traceAt(`policy ${w}`);
  trace('locked');
  store.removeTemporaries();
  const state = store.read();
  const crashed = store.dirty;
  // A marker without a state: the first change crashed, and the kernel
  // holds only what it applied; the normal path re-applies everything.
  if (state.absent && !crashed) {
    const table = await kernel.listPolicyTable();
    // A table another state dir owns is that one's, not a state we lost:
    // nothing of ours is in it, so a DEL has only its own commands to apply.
    const conflict = typeof table === 'string' ? undefined : ownerConflictInTable(config.stateDir, table);
    if (conflict && !forget) throw conflict;
    if (await withoutState(kernel, join(config.stateDir, STATE_FILE), conflict ? [] : table, forget, extra)) return { path: 'without-state' };
  }
  trace(`state read${crashed ? ' (an earlier change did not finish: re-applying everything)' : ''}`);
  const before = state.pods;
  const pods = { ...before };
  opts.change?.(pods);
  const remote = opts.remote ? cleanRemote(opts.remote) : state.remote;
  // A state that never reached the kernel and stays empty has nothing to
  // apply (a DEL after a refused ADD must not need the table).
  if (!full && !crashed && state.gen === undefined && !Object.keys(before).length && !Object.keys(pods).length && !remote.length) {
    // The caller's own commands (a port guard to remove) still go in.
    if (extra.length) {
      const r = await kernel.apply(extra);
      if (!r.ok) throw new CniError(Code.SystemFailure, 'applying nftables changes failed', r.error);
    }
    return { path: 'nothing' };
  }
  const prev = state.compile;
  const fingerprint = policies ? manifestFingerprint(config) : state.fingerprint;
  const gen = state.gen;
  const nextGen = ((gen ?? 0) % 0x7ffffffe) + 1;
  const writeState = (compiled: string | undefined) => {
    const f: StateFile = { version: 2, gen: nextGen, pods };
    if (compiled) f.compiled = compiled;
    if (fingerprint) f.fingerprint = fingerprint;
    if (remote.length) f.remote = remote;
    store.writeState(f);
  };
  const apply = (cmds: NftCommand[], whole = false) => {
    store.markDirty();
    const own = [...ownerCommands(config.stateDir, whole), ...generationCommands(gen, nextGen, whole)];
    return kernel.apply([...extra, ...(whole ? [...cmds, ...own] : [...own, ...cmds])]);
  };

  // Same policies, options and layout as the compile the kernel holds (undefined policies: the ones last applied, read only if needed).
  const unchanged = !full && !crashed && prev !== undefined && gen !== undefined && prev.layout === POLICY_LAYOUT &&
    same(prev.audit, config.audit) && (policies === undefined || same(state.policies, policies));
  // change() replaces or deletes entries, never edits them in place.
  const changed = (k: string) => before[k] !== pods[k];
  let refused = false;
  // Remote peers that came, went or changed: peers only, so a known group's
  // peer-set elements, like a local pod's, and the same fast path.
  const oldRemote = new Map(state.remote.map((r) => [r.id, JSON.stringify(r)]));
  const newRemote = new Map(remote.map((r) => [r.id, JSON.stringify(r)]));
  const remoteGone = state.remote.filter((r) => newRemote.get(r.id) !== oldRemote.get(r.id));
  const remoteCome = remote.filter((r) => newRemote.get(r.id) !== oldRemote.get(r.id));
  if (unchanged) {
    const cmds = fastDelta(prev, [...compilerPods(before, changed), ...asRemote(remoteGone)], [...compilerPods(pods, changed), ...asRemote(remoteCome)]);
    trace(`fast delta computed (${cmds ? `${cmds.length} commands` : 'a new group: compile'})`);
    if (cmds) {
      const r = await apply(cmds);
      trace(`fast delta (${r.ok ? 'ok' : 'refused'})`);
      if (r.ok) {
        crashPoint('policy-kernel');
        writeState(state.compileId);
        store.clearDirty();
        trace('state written');
        return { path: 'fast' };
      }
      refused = true;
    }
  }
  const previous = prev?.names ?? state.names;
  // After a crash, or for `policy sync`, objects no file names are looked up in the kernel.
  const names = crashed || full ? mergeNames(previous, await kernelNames(kernel)) : previous;
  const pols = policies ?? state.policies;
  const compiled = compile(pols, compilerPods(pods), config.audit, names, remote);
  trace(`compiled (${Object.keys(pods).length} pods)`);
  let path: ReconcilePath = 'full';
  let r;
  if (unchanged && !refused) {
    const was = previousDesired(state, before);
    if (was) {
      r = await apply(delta(was, compiled));
      path = 'delta';
      trace(`delta applied (${r.ok ? 'ok' : `refused: ${r.error.slice(0, 200)}`})`);
    }
  }
  if (!r || !r.ok) {
    path = 'full';
    r = await apply(compiled.commands, true);
  }
  if (!r.ok) {
    // Nothing of it reached the kernel (a transaction is all or nothing).
    store.clearDirty();
    const conflict = await ownerConflict(config.stateDir, kernel);
    if (conflict) throw conflict;
    throw new CniError(Code.SystemFailure, 'applying the policy to nftables failed', r.error);
  }
  trace('applied');
  crashPoint('policy-kernel');
  const id = store.writeCompile(
    {
      layout: POLICY_LAYOUT, audit: config.audit, names: compiled.names, classIndex: compiled.classIndex, labelKeys: compiled.labelKeys,
      podElems: compiled.podElems, desired: { counters: compiled.desired.counters },
    },
    { policies: pols, profiles: compiled.profiles },
  );
  writeState(id);
  store.clearDirty();
  store.removeCompilesBut(id);
  trace('state written');
  return { path, compiled };
}

/**
 * What the kernel holds now, for a delta: derived from the pods and remote
 * peers before the change and the compile they are under. Undefined (a full
 * apply) when it cannot be derived: a pod of a group the index does not know.
 */
function previousDesired(state: StoredState, before: Pods) {
  if (!state.compile) return undefined;
  return deriveDesired([...compilerPods(before), ...asRemote(state.remote)], state.compile);
}

/** Remote peers as the compiler's pods: marked, so they land in their own (profile-less) groups. */
const asRemote = (peers: RemotePeer[]) => peers.map((r) => ({ ...r, remote: true }));
