// The node's policy state on disk, in one state directory:
//   policy-state.json            the StateFile: this node's pods, the remote
//                                peers, the generation, and which compile they
//                                are under; rewritten by every change
//   policy-compiled-<id>.json    a CompileRecord (what every change reads),
//   policy-compiled-<id>.policies.json  its CompilePolicies (read only to
//                                compile again, or by stats and the CLI);
//                                written once, when policies or groups change
//   policy.dirty                 the dirty marker: present while the kernel may
//                                be ahead of the files (a crash mid-change)
//   policy.lock                  held from read to write by every change
// Every file is written atomically (temporary file and rename). A state of
// the first layout (version absent: everything in policy-state.json) is still
// read: its pods, policies and names, so the next change re-applies it all.
import { closeSync, constants, lstatSync, readdirSync, unlinkSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { CniError, Code } from '../../cni/errors.js';
import { removeStaleTemporaries, writeFileAtomic } from '../../sys/files.js';
import { existsNoFollow, openNoFollow, readNoFollow } from '../../sys/safe-path.js';
import type { AuditOptions, Compiled, CompiledIndex, CompiledNames } from '../compile/index.js';
import type { Policy } from '../model.js';
import type { Pods, RemotePeer } from './pods.js';

/** policy-state.json, version 2. */
export interface StateFile {
  version: 2;
  /** The generation of the table these pods were last applied as (the element of set `gen`). */
  gen?: number;
  /** The id of the compile these pods are under; absent: none yet, the next change applies everything. */
  compiled?: string;
  /** manifestFingerprint() of the manifests the compile's policies came from. */
  fingerprint?: string;
  pods: Pods;
  /** Other nodes' pods, as peers (from the cluster agent); absent: none. */
  remote?: RemotePeer[];
}

/** policy-state.json of any version: version 2, or the first layout with its policies and names inline. */
type StateFileAnyVersion = Partial<StateFile> & { policies?: Policy[]; names?: CompiledNames; profiles?: Compiled['profiles'] };

/** policy-compiled-<id>.json: a compile's index, with the options it was made under. Never edited. */
export interface CompileRecord extends CompiledIndex {
  audit: AuditOptions;
  /** POLICY_LAYOUT of the code that wrote it. */
  layout?: number;
}

/** policy-compiled-<id>.policies.json: the compile's policies, and its profiles for `policy stats`. */
export interface CompilePolicies {
  policies: Policy[];
  /** Profile chain -> direction, policies and deny counter. */
  profiles: Compiled['profiles'];
}

/** The node's policy state as read. Shared between readers: never edit it in place. */
export interface StoredState {
  pods: Pods;
  remote: RemotePeer[];
  gen?: number;
  compileId?: string;
  compile?: CompileRecord;
  fingerprint?: string;
  /** The compile's policies and profiles (read from disk on first use); empty without one. */
  readonly policies: Policy[];
  readonly profiles: Compiled['profiles'];
  /** The chains and sets the kernel holds by the last compile (or the first layout's). */
  names: CompiledNames;
  /** No state file at all (a new node, or a state directory that was lost). */
  absent?: true;
}

export const STATE_FILE = 'policy-state.json';
const COMPILED_PREFIX = 'policy-compiled-';
const ID = /^[0-9a-f]{16}$/;
const noNames = (): CompiledNames => ({ chains: [], sets: [] });

export class PolicyStore {
  readonly statePath: string;
  readonly lockPath: string;
  private readonly dirtyPath: string;
  /**
   * The last state read, with the file's identity (inode, size, times): one
   * ADD reads the state twice (manifests, then under the lock). Checked with
   * an lstat at every read, so another process's write is always seen.
   */
  private last: { stamp: string; state: StoredState } | undefined;
  /** The compile files of one id: they never change once written. Only the latest id is kept. */
  private compileFiles: { id: string; record?: CompileRecord | undefined; policies?: CompilePolicies | undefined } | undefined;

  constructor(readonly dir: string) {
    this.statePath = join(dir, STATE_FILE);
    this.lockPath = join(dir, 'policy.lock');
    this.dirtyPath = join(dir, 'policy.dirty');
  }

  read(): StoredState {
    try {
      const st = lstatSync(this.statePath, { bigint: true });
      const stamp = `${st.ino}/${st.size}/${st.mtimeNs}/${st.ctimeNs}`;
      if (this.last?.stamp === stamp) return this.last.state;
      const state = this.toState(JSON.parse(readNoFollow(this.statePath)) as StateFileAnyVersion);
      this.last = { stamp, state };
      return state;
    } catch (e) {
      if (e instanceof CniError) throw e;
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CniError(Code.SystemFailure, 'cannot read the policy state', `${this.statePath}: ${(e as Error).message}`);
      return { pods: {}, remote: [], policies: [], profiles: {}, names: noNames(), absent: true };
    }
  }

  private toState(file: StateFileAnyVersion): StoredState {
    const pods = file.pods && typeof file.pods === 'object' ? file.pods : {};
    if (file.version !== 2) {
      // Migration from the first layout: its pods, and its policies and names
      // so that the next change can re-apply everything and clean up.
      return { pods, remote: [], policies: file.policies ?? [], profiles: file.profiles ?? {}, names: file.names ?? noNames() };
    }
    const id = typeof file.compiled === 'string' && ID.test(file.compiled) ? file.compiled : undefined;
    const compile = id ? this.compileRecord(id) : undefined;
    let rest: CompilePolicies | undefined;
    const more = (): CompilePolicies => {
      if (!compile || !id) return { policies: [], profiles: {} };
      const p = (rest ??= this.compilePolicies(id));
      if (!p) throw new CniError(Code.SystemFailure, 'the policy state changed while it was read', `${this.compilePath(id, '.policies')} is gone; try again`);
      return p;
    };
    const out: StoredState = {
      pods,
      remote: Array.isArray(file.remote) ? file.remote : [],
      get policies() {
        return more().policies;
      },
      get profiles() {
        return more().profiles;
      },
      names: compile?.names ?? noNames(),
    };
    if (compile && id) {
      out.compile = compile;
      out.compileId = id;
    }
    if (file.fingerprint) out.fingerprint = file.fingerprint;
    if (typeof file.gen === 'number' && Number.isInteger(file.gen)) out.gen = file.gen;
    return out;
  }

  private compilePath(id: string, part = ''): string {
    return join(this.dir, `${COMPILED_PREFIX}${id}${part}.json`);
  }

  private files(id: string): NonNullable<PolicyStore['compileFiles']> {
    if (this.compileFiles?.id !== id) this.compileFiles = { id };
    return this.compileFiles;
  }

  /** A compile file; undefined when it is gone (replaced by a concurrent change after we read the pods, outside the lock). */
  private readJson<T>(path: string): T | undefined {
    try {
      return JSON.parse(readNoFollow(path)) as T;
    } catch (e) {
      if (e instanceof CniError) throw e;
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw new CniError(Code.SystemFailure, 'cannot read the policy state', `${path}: ${(e as Error).message}`);
    }
  }

  private compileRecord(id: string): CompileRecord | undefined {
    const f = this.files(id);
    f.record ??= this.readJson<CompileRecord>(this.compilePath(id));
    return f.record;
  }

  private compilePolicies(id: string): CompilePolicies | undefined {
    const f = this.files(id);
    f.policies ??= this.readJson<CompilePolicies>(this.compilePath(id, '.policies'));
    return f.policies;
  }

  /** Writes a new compile's two files (the policies first: a record is never without them); returns its id. */
  writeCompile(record: CompileRecord, policies: CompilePolicies): string {
    const id = randomBytes(8).toString('hex');
    writeFileAtomic(this.compilePath(id, '.policies'), JSON.stringify(policies));
    writeFileAtomic(this.compilePath(id), JSON.stringify(record));
    return id;
  }

  writeState(file: StateFile): void {
    writeFileAtomic(this.statePath, JSON.stringify(file));
  }

  /** Earlier compiles: once the state names `id`, nothing refers to them any more. */
  removeCompilesBut(id: string): void {
    for (const f of readdirSync(this.dir)) {
      if (f.startsWith(COMPILED_PREFIX) && !f.startsWith(`${COMPILED_PREFIX}${id}.`)) unlinkSync(join(this.dir, f));
    }
  }

  /** Temporary files a killed writer left. */
  removeTemporaries(): void {
    removeStaleTemporaries(this.dir);
  }

  get dirty(): boolean {
    return existsNoFollow(this.dirtyPath);
  }

  /** Set before the kernel changes, cleared once the files say what it holds. */
  markDirty(): void {
    closeSync(openNoFollow(this.dirtyPath, constants.O_WRONLY | constants.O_CREAT));
  }

  clearDirty(): void {
    unlinkSync(this.dirtyPath);
  }
}
