// The workload identity a runtime hands to the plugin: the capability
// `io.nhi-cni/workload` (runtimeConfig) plus CNI-convention labels in
// `args.cni.labels`. Everything policies select on is validated here with the
// Kubernetes rules, so the evaluator and the compiler can trust it.
import * as z from '../cni/zod.js';
import { CniError, Code } from '../cni/errors.js';
import type { Identity, Protocol } from './model.js';
import { validateLabelKey, validateLabelValue, validateNamespace, validatePodName, validatePortName } from './names.js';

/** The runtimeConfig key (and capability name) carrying the workload. */
export const WORKLOAD_CAPABILITY = 'io.nhi-cni/workload';
/** Kubernetes sets this label on every namespace (since 1.21); policies select namespaces by it. */
export const NAMESPACE_NAME_LABEL = 'kubernetes.io/metadata.name';
/**
 * Cilium's label for a pod's service account, which CiliumNetworkPolicy
 * selectors (endpointSelector, from/toEndpoints) name to select workloads by
 * their non-human identity. Derived from the service account only: a label
 * under this prefix that a pod (or a runtime) sets itself is dropped, or a pod
 * could claim another workload's service account by labelling itself.
 */
export const SERVICE_ACCOUNT_LABEL = 'io.cilium.k8s.policy.serviceaccount';
const RESERVED_LABEL_PREFIX = 'io.cilium.k8s.policy.';

/** The SPIFFE-style id of a workload's service account: spiffe://<trust domain>/ns/<namespace>/sa/<service account>. */
export function spiffeId(i: Pick<Identity, 'namespace' | 'serviceAccount'>, trustDomain = 'cluster.local'): string | undefined {
  return i.serviceAccount === undefined ? undefined : `spiffe://${trustDomain}/ns/${i.namespace}/sa/${i.serviceAccount}`;
}

const CAP_PATH = `runtimeConfig[${JSON.stringify(WORKLOAD_CAPABILITY)}]`;

const Labels = z.record(z.string(), z.string());

export const WorkloadPortSchema = z.object({
  // Unnamed container ports are accepted (Kubernetes allows them) but dropped:
  // policies reach a port only by number or by name.
  name: z.optional(z.string()),
  containerPort: z.number().check(z.int(), z.gte(1), z.lte(65535)),
  protocol: z._default(z.enum(['TCP', 'UDP', 'SCTP']), 'TCP'),
});

export const WorkloadSchema = z.object({
  namespace: z.string(),
  name: z.string(),
  labels: z._default(Labels, {}),
  namespaceLabels: z._default(Labels, {}),
  serviceAccount: z.optional(z.string()),
  ports: z._default(z.array(WorkloadPortSchema), []),
});

/** CNI CONVENTIONS.md "args": `args.cni.labels` is a list of {key, value}. */
export const ArgsLabelsSchema = z.array(z.object({ key: z.string(), value: z.string() }));

const ConfigSchema = z.looseObject({
  runtimeConfig: z.optional(z.looseObject({ [WORKLOAD_CAPABILITY]: z.optional(WorkloadSchema) })),
  args: z.optional(z.looseObject({ cni: z.optional(z.looseObject({ labels: z.optional(ArgsLabelsSchema) })) })),
});

function invalid(msg: string, details = ''): CniError {
  return new CniError(Code.InvalidConfig, msg, details);
}

/** `runtimeConfig["io.nhi-cni/workload"].ports[0].name` from a zod issue path. */
function pathText(path: PropertyKey[]): string {
  return path
    .map((p, i) => {
      if (typeof p === 'number') return `[${p}]`;
      const s = String(p);
      if (/^[A-Za-z_$][\w$]*$/.test(s)) return i === 0 ? s : `.${s}`;
      return `[${JSON.stringify(s)}]`;
    })
    .join('');
}

function checkLabels(labels: Record<string, string>, where: string): void {
  for (const [k, v] of Object.entries(labels)) {
    const why = validateLabelKey(k) ?? validateLabelValue(v);
    if (why) throw invalid(`${where}[${JSON.stringify(k)}]: ${why}`);
  }
}

/** Where a workload's namespace and name come from when the capability is absent (CNI_ARGS K8S_POD_*). */
export interface IdentityFallback {
  namespace?: string;
  name?: string;
}

/**
 * Builds and validates an Identity from the capability object and the
 * `args.cni.labels` list. On a label key given twice the capability wins, then
 * the first occurrence in args (the same "runtime capability first" order as
 * runtimeConfig.mac over args.cni.mac). Throws CniError 7 naming the field.
 */
export function buildIdentity(
  workload: z.output<typeof WorkloadSchema> | undefined,
  argLabels: { key: string; value: string }[] = [],
  fallback: IdentityFallback = {},
): Identity {
  const where = workload ? CAP_PATH : 'CNI_ARGS';
  const namespace = workload?.namespace ?? fallback.namespace;
  const name = workload?.name ?? fallback.name;
  if (namespace === undefined || name === undefined) {
    throw invalid(
      'args.cni.labels given without a workload namespace and name',
      `pass the ${WORKLOAD_CAPABILITY} capability (runtimeConfig) with namespace and name, or K8S_POD_NAMESPACE and K8S_POD_NAME in CNI_ARGS`,
    );
  }
  const nsWhy = validateNamespace(namespace);
  if (nsWhy) throw invalid(`${where}.namespace: ${nsWhy}`);
  const nameWhy = validatePodName(name);
  if (nameWhy) throw invalid(`${where}.name: ${nameWhy}`);

  const labels: Record<string, string> = { ...(workload?.labels ?? {}) };
  checkLabels(labels, `${CAP_PATH}.labels`);
  argLabels.forEach(({ key, value }, i) => {
    const kw = validateLabelKey(key);
    if (kw) throw invalid(`args.cni.labels[${i}].key: ${kw}`);
    const vw = validateLabelValue(value);
    if (vw) throw invalid(`args.cni.labels[${i}].value: ${vw}`);
    if (!Object.hasOwn(labels, key)) labels[key] = value;
  });

  const namespaceLabels: Record<string, string> = { ...(workload?.namespaceLabels ?? {}) };
  checkLabels(namespaceLabels, `${CAP_PATH}.namespaceLabels`);
  // The API server always sets this label to the namespace's name (and refuses
  // any other value), so the identity implies it whatever the runtime said.
  namespaceLabels[NAMESPACE_NAME_LABEL] = namespace;

  for (const k of Object.keys(labels)) if (k.startsWith(RESERVED_LABEL_PREFIX)) delete labels[k];
  const out: Identity = { namespace, name, labels, namespaceLabels, ports: [] };
  if (workload?.serviceAccount !== undefined) {
    // ServiceAccount names are DNS-1123 subdomains, the same rule as pod names.
    const why = validatePodName(workload.serviceAccount);
    if (why) throw invalid(`${CAP_PATH}.serviceAccount: ${why}`);
    out.serviceAccount = workload.serviceAccount;
    labels[SERVICE_ACCOUNT_LABEL] = workload.serviceAccount;
  }
  const seen = new Map<string, number>();
  (workload?.ports ?? []).forEach((p, i) => {
    if (p.name === undefined) return;
    const why = validatePortName(p.name);
    if (why) throw invalid(`${CAP_PATH}.ports[${i}].name: ${why}`);
    // A name must resolve to one number per protocol, or a named-port rule
    // would be ambiguous.
    const key = `${p.name}/${p.protocol}`;
    const prev = seen.get(key);
    if (prev !== undefined && prev !== p.containerPort) {
      throw invalid(`${CAP_PATH}.ports[${i}]: port name ${JSON.stringify(p.name)} (${p.protocol}) names both ${prev} and ${p.containerPort}`);
    }
    if (prev !== undefined) return;
    seen.set(key, p.containerPort);
    out.ports.push({ name: p.name, containerPort: p.containerPort, protocol: p.protocol as Protocol });
  });
  return out;
}

/**
 * The workload identity of a CNI request, from `runtimeConfig["io.nhi-cni/workload"]`
 * and `args.cni.labels`; undefined when neither is present (the attachment is
 * then no policy subject). `fallback` (K8S_POD_NAMESPACE/K8S_POD_NAME from
 * CNI_ARGS) names the workload when only labels are given.
 */
export function identityFromConfig(config: Record<string, unknown>, fallback: IdentityFallback = {}): Identity | undefined {
  const p = ConfigSchema.safeParse(config);
  if (!p.success) {
    const lines = p.error.issues.map((i) => `${pathText(i.path)}: ${i.message}`);
    throw invalid(`invalid workload identity: ${lines[0] ?? 'malformed'}`, lines.join('; '));
  }
  const workload = p.data.runtimeConfig?.[WORKLOAD_CAPABILITY];
  const argLabels = p.data.args?.cni?.labels;
  if (workload === undefined && argLabels === undefined) return undefined;
  return buildIdentity(workload, argLabels, fallback);
}

/** "<namespace>/<name>". */
export function identityKey(i: Pick<Identity, 'namespace' | 'name'>): string {
  return `${i.namespace}/${i.name}`;
}
