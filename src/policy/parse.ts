// Manifests → the policy model (model.ts). Kubernetes NetworkPolicy v1 with the
// API server's validation and defaulting, and the L3/L4 part of
// CiliumNetworkPolicy v2. Whatever cannot be enforced exactly (L7 rules, FQDNs,
// entities, …) is refused with an error naming file, document, policy and
// field: a policy is never silently widened. Pure except loadPolicyDir.
// The parsers live in parse/: common.ts (errors, zod plumbing, selectors,
// CIDRs, ports, metadata), network-policy.ts, cilium.ts; this file turns
// objects, documents and files into policies.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import * as z from '../cni/zod.js';
import { loadBundleSync } from '../lazy.js';
import type { Policy, Selector } from './model.js';
import { validateNamespace, validatePodName } from './names.js';
import { check, describe, Doc, isMap, labelSelector, type L7Mode, type ParseOptions, PolicyError, shown } from './parse/common.js';
import { networkPolicy } from './parse/network-policy.js';
import { ciliumNetworkPolicy } from './parse/cilium.js';

export { formatPath, PolicyError } from './parse/common.js';
export type { L7Mode, ParseOptions } from './parse/common.js';

/** The L7 mode of parse options; anything but 'proxy' spelled exactly is a programming error, not a wider mode. */
function l7Mode(opts: ParseOptions | undefined): L7Mode {
  const m = opts?.l7 ?? 'refuse';
  if (m !== 'refuse' && m !== 'proxy') throw new Error(`parse option l7 must be 'refuse' or 'proxy', not ${JSON.stringify(m)}`);
  return m;
}

// ---- objects, documents, files ----

function parseObject(obj: unknown, doc: Doc, out: Policy[]): void {
  if (obj === null || obj === undefined) return; // an empty document
  if (!isMap(obj)) doc.fail([], `not a Kubernetes object: ${describe(obj)}`);
  const { apiVersion, kind } = obj;
  if (typeof apiVersion !== 'string' || typeof kind !== 'string') {
    doc.fail([], 'not a Kubernetes object: apiVersion and kind must be strings');
  }
  if (kind === 'List') {
    const items = check(z.array(z.unknown()), obj.items ?? [], doc, ['items']);
    items.forEach((item, i) => parseObject(item, doc.item(['items', i]), out));
    return;
  }
  doc.kind = kind;
  if (isMap(obj.metadata)) {
    if (typeof obj.metadata.name === 'string') doc.name = obj.metadata.name;
    if (typeof obj.metadata.namespace === 'string') doc.namespace = obj.metadata.namespace;
  }
  if (apiVersion === 'networking.k8s.io/v1' && kind === 'NetworkPolicy') {
    out.push(networkPolicy(obj, doc));
  } else if (apiVersion === 'cilium.io/v2' && kind === 'CiliumNetworkPolicy') {
    out.push(...ciliumNetworkPolicy(obj, doc));
  } else if (kind === 'CiliumClusterwideNetworkPolicy') {
    doc.fail([], 'CiliumClusterwideNetworkPolicy is not supported yet; refusing rather than ignoring it');
  } else if (kind.includes('NetworkPolicy')) {
    // Another policy kind or version (extensions/v1beta1, AdminNetworkPolicy, Calico, cilium.io/v2alpha1, …):
    // skipping it would leave traffic open that its author meant to restrict.
    doc.fail([], `${shown(apiVersion)} ${shown(kind)} is not supported (only networking.k8s.io/v1 NetworkPolicy and cilium.io/v2 CiliumNetworkPolicy); refusing rather than ignoring a policy`);
  }
  // Any other object (a Deployment, a Namespace, …) is not ours: skipped.
}

const policyKey = (p: Policy) => `${p.kind}\0${p.namespace}\0${p.name}`;

/** Refuses a policy defined twice (same kind, namespace and name): the API server would hold only one. */
function unique(policies: Policy[]): Policy[] {
  const seen = new Map<string, Policy>();
  for (const p of policies) {
    const first = seen.get(policyKey(p));
    if (first) {
      throw new PolicyError(
        `${p.source.file} document ${p.source.index} (${p.kind} ${p.namespace}/${p.name}): duplicate policy; also defined in ${first.source.file} document ${first.source.index}`,
      );
    }
    seen.set(policyKey(p), p);
  }
  return policies;
}

/** Every policy in a YAML (or JSON) text of one or more documents. */
export function parseManifestText(text: string, file: string, opts?: ParseOptions): Policy[] {
  const l7 = l7Mode(opts);
  const out: Policy[] = [];
  // The YAML library is a lazy bundle (src/yaml/index.ts): only a process that parses a manifest loads it.
  const docs = loadBundleSync('yaml').parseAllDocuments(text);
  for (let i = 0; i < docs.length; i++) {
    const d = docs[i]!;
    const err = d.errors[0];
    if (err) throw new PolicyError(`${file} document ${i}: YAML syntax error: ${err.message.split('\n')[0]!.replace(/:$/, '')}`);
    let value: unknown;
    try {
      value = d.toJS({ maxAliasCount: 100 });
    } catch (e) {
      throw new PolicyError(`${file} document ${i}: YAML error: ${e instanceof Error ? e.message : String(e)}`);
    }
    parseObject(value, new Doc(file, i, [], l7), out);
  }
  return unique(out);
}

/** The policies of one decoded object (one NetworkPolicy gives one; a CiliumNetworkPolicy with `specs`, several). */
export function parsePolicyObject(obj: unknown, file: string, opts?: ParseOptions): Policy[] {
  const out: Policy[] = [];
  parseObject(obj, new Doc(file, 0, [], l7Mode(opts)), out);
  return out;
}

/** Every policy among already-decoded objects (a plugin config's `policy.manifests`, file "inline"). */
export function parseManifestObjects(objs: unknown[], file: string, opts?: ParseOptions): Policy[] {
  if (!Array.isArray(objs)) throw new PolicyError(`${file}: manifests must be a list of objects, not ${describe(objs)}`);
  const l7 = l7Mode(opts);
  const out: Policy[] = [];
  objs.forEach((o, i) => parseObject(o, new Doc(file, i, [], l7), out));
  return unique(out);
}

/** Every policy in dir/*.yaml, *.yml and *.json (sorted, not recursive); the first bad manifest fails it all. */
export function loadPolicyDir(dir: string, opts?: ParseOptions): Policy[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new PolicyError(`cannot read policy directory ${dir}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const out: Policy[] = [];
  for (const name of names.filter((n) => /\.(ya?ml|json)$/.test(n)).sort()) {
    const file = join(dir, name);
    let text: string;
    try {
      // stat follows symlinks: a ConfigMap volume's files are links into ..data/.
      if (!statSync(file).isFile()) continue;
      text = readFileSync(file, 'utf8');
    } catch (e) {
      throw new PolicyError(`cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
    }
    out.push(...parseManifestText(text, file, opts));
  }
  return unique(out);
}

// ---- one API object, fail closed ----

// For the cluster agent, one API object at a time: a policy that cannot be
// enforced exactly harms only what it names. It is refused, and a stand-in
// takes its place that is never more open than what its author asked for:
//   - its pods (its selector when that parses, else every pod of its
//     namespace) are isolated in both directions, with nothing allowed by it
//     (an allow rule we cannot enforce allows nothing; other policies' allows
//     still apply, as they would beside it);
//   - when the refused part is a deny rule (CiliumNetworkPolicy ingressDeny /
//     egressDeny), everything in that direction is denied for its pods: a deny
//     we cannot enforce must not let through what it named.
// Other namespaces are untouched. A refused object whose namespace itself is
// invalid cannot be placed and yields no stand-in (the API server never
// serves one).
export interface Refusal {
  /** "Kind namespace/name". */
  id: string;
  reason: string;
}

const EVERY_POD: Selector = { matchLabels: {}, matchExpressions: [] };

/** The pods a refused policy selects: its selector when that alone parses, else its whole namespace. */
function subjectOf(obj: Record<string, unknown>, kind: string, doc: Doc): Selector {
  const spec = isMap(obj.spec) ? obj.spec : undefined;
  const raw = kind === 'NetworkPolicy' ? spec?.podSelector : spec?.endpointSelector;
  if (!isMap(raw) || Array.isArray(obj.specs)) return EVERY_POD;
  try {
    const sel = labelSelector(raw, doc, ['spec', kind === 'NetworkPolicy' ? 'podSelector' : 'endpointSelector']);
    return sel.namespaces ? EVERY_POD : sel.pods;
  } catch {
    return EVERY_POD;
  }
}

/**
 * The policies of one API object (NetworkPolicy or CiliumNetworkPolicy), or,
 * when it cannot be enforced exactly, its fail-closed stand-in and why.
 */
export function parsePolicyFailClosed(obj: unknown, file: string, opts?: ParseOptions): { policies: Policy[]; refused?: Refusal } {
  try {
    return { policies: parsePolicyObject(obj, file, opts) };
  } catch (e) {
    if (!(e instanceof PolicyError)) throw e;
    const o = isMap(obj) ? obj : {};
    const meta = isMap(o.metadata) ? o.metadata : {};
    const kind = o.kind === 'CiliumNetworkPolicy' ? 'CiliumNetworkPolicy' : 'NetworkPolicy';
    const namespace = typeof meta.namespace === 'string' ? meta.namespace : '';
    const name = typeof meta.name === 'string' && !validatePodName(meta.name) ? meta.name : 'invalid-name';
    const refused: Refusal = { id: `${kind} ${namespace}/${name}`, reason: e.message };
    if (!namespace || validateNamespace(namespace)) return { policies: [], refused };
    const denyIn = e.path?.includes('ingressDeny') === true;
    const denyOut = e.path?.includes('egressDeny') === true;
    const standIn: Policy = {
      kind, namespace, name,
      subject: subjectOf(o, kind, new Doc(file, 0)),
      isolates: { ingress: true, egress: true },
      ingress: [], egress: [],
      ingressDeny: denyIn ? [{}] : [],
      egressDeny: denyOut ? [{}] : [],
      source: { file, index: 0 },
    };
    return { policies: [standIn], refused };
  }
}
