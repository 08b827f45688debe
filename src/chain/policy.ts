// The policy module: keeps the node's policy state (its pods, their
// identities and addresses, the policies last applied) and turns every change
// into one nft transaction. Shared by nhi-cni and the chained nhi-policy.
//   <stateDir>/policy-state.json   the state, rewritten atomically under
//   <stateDir>/policy.lock         an exclusive lock held from read to write
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import { CniError, Code } from '../cni/errors.js';
import { formatIssues } from '../cni/result.js';
import { parseIp } from '../net/ip.js';
import { writeFileAtomic } from '../sys/files.js';
import { withLockAsync } from '../sys/lock.js';
import { applyNft, NftTransaction, type NftCommand } from '../sys/nft.js';
import { ensureSysctl } from '../sys/sysfs.js';
import { trace as traceAt } from '../sys/trace.js';
import { classKey, compile, delta, fastDelta, type AuditOptions, type ClassEntry, type Compiled, type CompiledNames, type Desired, type LocalPod } from '../policy/compile.js';
import type { Identity, Policy } from '../policy/model.js';
import { loadPolicyDir, parseManifestObjects } from '../policy/parse.js';

export const PolicyConfigInput = z.object({
  dir: z.string().optional(),
  manifests: z.array(z.unknown()).optional(),
  audit: z.boolean().optional(),
  auditNamespaces: z.array(z.string()).optional(),
  auditPolicies: z.array(z.string()).optional(),
  /** A kubeconfig to fetch identities from the Kubernetes API (src/policy/k8s.ts reads it). */
  kubeconfig: z.string().optional(),
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
  const p = PolicyConfigInput.safeParse(raw);
  if (!p.success) throw new CniError(Code.InvalidConfig, 'invalid policy configuration', formatIssues(p.error, 'policy'));
  const c = p.data;
  if (c.dir !== undefined && (!c.dir.startsWith('/') || c.dir.split('/').includes('..'))) {
    throw new CniError(Code.InvalidConfig, `policy.dir ${JSON.stringify(c.dir)} must be an absolute path without ".."`);
  }
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
 * in a fresh process; a fingerprint costs a stat per file).
 */
export function loadPoliciesCached(pc: PolicyConfig): Policy[] {
  const state = readPolicyState(pc.stateDir);
  if (state.fingerprint && state.fingerprint === manifestFingerprint(pc)) return state.policies;
  return loadPolicies(pc);
}

export interface PolicyPod {
  network: string;
  containerId: string;
  ifname: string;
  ips: string[];
  identity?: Identity;
}

interface PolicyState {
  pods: Record<string, PolicyPod>;
  policies: Policy[];
  /** What is in the kernel since the last apply, and under which audit options. */
  desired?: Desired;
  audit?: AuditOptions;
  /** Per group of alike pods: its sets and profiles (see fastDelta). */
  classIndex?: Record<string, ClassEntry>;
  /** manifestFingerprint() of the manifests `policies` came from. */
  fingerprint?: string;
  names: CompiledNames;
  profiles: Compiled['profiles'];
  podProfiles: Compiled['pods'];
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

function statePath(pc: PolicyConfig): string {
  return join(pc.stateDir, 'policy-state.json');
}

/** The last state read, with the file's identity: one ADD reads the state twice (manifests, then under the lock). */
let lastRead: { path: string; stamp: string; state: PolicyState } | undefined;

export function readPolicyState(stateDir: string): PolicyState {
  const path = join(stateDir, 'policy-state.json');
  try {
    const st = statSync(path, { bigint: true });
    const stamp = `${st.ino}/${st.size}/${st.mtimeNs}/${st.ctimeNs}`;
    if (lastRead && lastRead.path === path && lastRead.stamp === stamp) return lastRead.state;
    const state = JSON.parse(readFileSync(path, 'utf8')) as PolicyState;
    lastRead = { path, stamp, state };
    return state;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new CniError(Code.SystemFailure, 'cannot read the policy state', (e as Error).message);
    return { pods: {}, policies: [], names: { chains: [], sets: [] }, profiles: {}, podProfiles: {} };
  }
}

/**
 * Applies a change to the node's pods: under the policy lock, reads the
 * state, lets `change` edit its pods, compiles everything, and applies the
 * transaction (with `extra`, e.g. the ADD's masquerade commands) in one nft
 * run. The state is written only after the kernel took the transaction.
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
): Promise<Compiled | undefined> {
  // Same-bridge pod traffic is bridged, not routed: br_netfilter hands it to
  // the inet forward hook only with these on.
  ensureSysctl('net/bridge/bridge-nf-call-iptables', '1');
  ensureSysctl('net/bridge/bridge-nf-call-ip6tables', '1');
  return withLockAsync(join(pc.stateDir, 'policy.lock'), async () => {
    const trace = (w: string) => traceAt(`policy ${w}`);
    trace('locked');
    // A copy: the object read may be the cached one, which must stay as the file says.
    const state = { ...readPolicyState(pc.stateDir) };
    trace('state read');
    const before = state.pods;
    state.pods = { ...state.pods };
    change(state.pods);
    const pols = policies ?? state.policies;
    const toLocal = ([id, p]: [string, PolicyPod]): LocalPod => ({
      id,
      ips: p.ips.filter((a) => parseIp(a) !== undefined),
      ...(p.identity ? { identity: p.identity } : {}),
    });
    // Same policies and audit options as last time: apply only the
    // difference. Pods of groups already known need no compile at all
    // (fastDelta); otherwise compile and diff. Anything else, or a kernel
    // that no longer matches the state (a delta it refuses), gets the whole.
    const same = !full && state.desired !== undefined &&
      JSON.stringify(state.audit) === JSON.stringify(pc.audit) &&
      (state.policies === pols || JSON.stringify(state.policies) === JSON.stringify(pols));
    if (same && state.classIndex) {
      // change() replaces or deletes entries, never edits them in place.
      const changed = (k: string) => before[k] !== state.pods[k];
      const removed = Object.entries(before).filter(([k]) => changed(k) && before[k]).map(toLocal);
      const added = Object.entries(state.pods).filter(([k]) => changed(k)).map(toLocal);
      const fast = fastDelta(state.desired!, state.classIndex, removed, added);
      if (fast) {
        const r = await applyNft(new NftTransaction().push(...extra, ...fast.commands));
        trace(`fast delta (${r.exitCode === 0 ? 'ok' : 'refused'})`);
        if (r.exitCode === 0) {
          const podProfiles = { ...state.podProfiles };
          for (const p of removed) delete podProfiles[p.id];
          for (const p of added) {
            const e = p.identity ? state.classIndex[classKey(p.identity)] : undefined;
            const prof: { ingress?: string; egress?: string } = {};
            if (e?.ingress) prof.ingress = e.ingress;
            if (e?.egress) prof.egress = e.egress;
            if (e?.ingress || e?.egress) podProfiles[p.id] = prof;
          }
          writeFileAtomic(statePath(pc), JSON.stringify({ ...state, podProfiles, desired: fast.desired } satisfies PolicyState));
          trace('state written');
          return undefined;
        }
      }
    }
    const compiled = compile(pols, Object.entries(state.pods).map(toLocal), pc.audit, state.names);
    trace(`compiled (${Object.keys(state.pods).length} pods)`);
    let r = same ? await applyNft(new NftTransaction().push(...extra, ...delta(state.desired!, compiled))) : undefined;
    trace(same ? `delta applied (${r?.exitCode === 0 ? 'ok' : `refused: ${r?.stderr.trim().slice(0, 200)}`})` : 'no delta: policies or audit changed');
    if (!r || r.exitCode !== 0) r = await applyNft(new NftTransaction().push(...extra, ...compiled.commands));
    if (r.exitCode !== 0) throw new CniError(Code.SystemFailure, 'applying the policy to nftables failed', r.stderr.trim());
    const next: PolicyState = {
      pods: state.pods, policies: pols, names: compiled.names, profiles: compiled.profiles, podProfiles: compiled.pods,
      desired: compiled.desired, audit: pc.audit, classIndex: compiled.classIndex,
    };
    const fingerprint = policies ? manifestFingerprint(pc) : state.fingerprint;
    if (fingerprint) next.fingerprint = fingerprint;
    trace('applied');
    writeFileAtomic(statePath(pc), JSON.stringify(next));
    trace('state written');
    return compiled;
  });
}
