// The `policy` section of a plugin config, the manifests it names, and their
// fingerprint (what tells an ADD whether the manifests changed since the
// policies last applied, without parsing them).
import { createHash } from 'node:crypto';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as z from '../../cni/zod.js';
import { CniError, Code } from '../../cni/errors.js';
import { checkedPath } from '../../cni/paths.js';
import { formatIssues } from '../../cni/result.js';
import { refuseUnknownKeys } from '../../cni/suggest.js';
import type { AuditOptions } from '../compile/index.js';
import type { Policy } from '../model.js';
import { loadPolicyDir, parseManifestObjects } from '../parse.js';

export const PolicyConfigInput = z.strictObject({
  dir: z.optional(z.string()),
  manifests: z.optional(z.array(z.unknown())),
  audit: z.optional(z.boolean()),
  auditNamespaces: z.optional(z.array(z.string())),
  auditPolicies: z.optional(z.array(z.string())),
  /** A kubeconfig to fetch identities from the Kubernetes API (src/policy/k8s.ts reads it). */
  kubeconfig: z.optional(z.string()),
  /** The node agent's socket (`nhi-cni agent` writes it into the conflist): identities and policies come from it. */
  agentSocket: z.optional(z.string()),
});

export interface PolicyConfig {
  dir?: string;
  manifests?: unknown[];
  audit: AuditOptions;
  stateDir: string;
  /**
   * Cluster mode: the agent's socket. The agent alone decides the policies
   * (from the API); a CNI verb never reads manifests, it keeps the ones the
   * agent last applied.
   */
  agentSocket?: string;
}

export const NO_AUDIT: AuditOptions = { all: false, namespaces: [], policies: [] };

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
  if (c.agentSocket !== undefined) {
    if (c.dir !== undefined || c.manifests !== undefined) {
      throw new CniError(Code.InvalidConfig, 'policy.agentSocket cannot be combined with policy.dir or policy.manifests',
        'with the agent, the policies come from the Kubernetes API through it (policy.kubeconfig is its fallback for identities)');
    }
    out.agentSocket = c.agentSocket;
  }
  return out;
}

/** The policies of the configured manifests, parsed now (a policy edit takes effect with the next pod, or with `policy sync`). */
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
