// The third identity source: the pod and its namespace read from the
// Kubernetes API, when the plugin config names a kubeconfig
// (`policy.kubeconfig`) and CNI_ARGS names the pod (K8S_POD_NAMESPACE,
// K8S_POD_NAME). Only what policies select on is read: the pod's labels,
// service account and container ports, and its namespace's labels; all of it is
// validated like any other identity source (names.ts, via buildIdentity).
//
// Credentials (bearer tokens, keys) never appear in a message, a log line or
// the JSON/inspect form of a Kubeconfig.
import type { RequestOptions } from 'node:https';
import * as z from '../cni/zod.js';
import type { CniArgs } from '../cni/args.js';
import { CniError, Code } from '../cni/errors.js';
import { checkedPath } from '../cni/paths.js';
import { formatIssues } from '../cni/result.js';
import { buildIdentity, type WorkloadSchema } from './identity.js';
import type { Identity } from './model.js';
import { validateLabelKey, validateLabelValue, validateNamespace, validatePodName, validatePortName } from './names.js';
import { loadKubeconfig, rootless, type Kubeconfig } from './kubeconfig.js';

export { loadKubeconfig, type Kubeconfig } from './kubeconfig.js';

// node:https (and node:tls, in kubeconfig.ts) are loaded when first used, not at import: the
// binary's start-up snapshot cannot hold the HTTP parser handles they create,
// and most ADDs never talk to the API.
const https = () => process.getBuiltinModule('node:https') as typeof import('node:https');

/** The default budget for both API requests together. */
export const DEFAULT_TIMEOUT_MS = 3000;
/** A Pod or Namespace object is a few KiB; anything far larger is not one. */
const MAX_BODY = 4 << 20;

// ---------------------------------------------------------------- API reads

const Labels = z.nullish(z.record(z.string(), z.string()));

const PodSchema = z.looseObject({
  metadata: z.looseObject({ name: z.string(), namespace: z.string(), labels: Labels }),
  spec: z.looseObject({
    serviceAccountName: z.nullish(z.string()),
    containers: z.nullish(z.array(z.looseObject({
      ports: z.nullish(z.array(z.looseObject({
        name: z.nullish(z.string()),
        containerPort: z.number().check(z.int(), z.gte(1), z.lte(65535)),
        protocol: z.nullish(z.enum(['TCP', 'UDP', 'SCTP'])),
      }))),
    }))),
  }),
});

const NamespaceSchema = z.looseObject({ metadata: z.looseObject({ name: z.string(), labels: Labels }) });

/** metav1.Status, for the API's own words on a refusal. */
const StatusSchema = z.looseObject({ message: z.optional(z.string()), reason: z.optional(z.string()) });

interface Reply {
  status: number;
  body: string;
}

/** TLS verification failures: a wrong CA or server name is a configuration error, not a transient one. */
const TLS_VERIFY_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'INVALID_CA',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

function unreachable(kc: Kubeconfig, reason: string): CniError {
  return new CniError(Code.TryAgainLater, `cannot reach the Kubernetes API at ${kc.server}: ${reason}`, `kubeconfig ${kc.path}`);
}

/** One GET; resolves with the status and body, rejects with a CniError. */
function get(kc: Kubeconfig, path: string, signal: AbortSignal, timeoutMs: number): Promise<Reply> {
  return new Promise((resolveP, reject) => {
    const url = new URL(kc.server + path);
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': 'nhi-cni' };
    if (kc.token) headers.authorization = `Bearer ${kc.token}`;
    const opts: RequestOptions = {
      method: 'GET',
      agent: false,
      headers,
      rejectUnauthorized: !kc.insecureSkipTlsVerify,
    };
    if (kc.ca) opts.ca = kc.ca;
    if (kc.cert) opts.cert = kc.cert;
    if (kc.key) opts.key = kc.key;
    if (kc.tlsServerName) opts.servername = kc.tlsServerName;
    let settled = false;
    const fail = (e: CniError): void => {
      if (settled) return;
      settled = true;
      reject(e);
      req.destroy();
    };
    const req = https().request(url, opts, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) {
          fail(new CniError(Code.InvalidConfig, `the Kubernetes API at ${kc.server} answered GET ${path} with more than ${MAX_BODY} bytes`, `kubeconfig ${kc.path}`));
          return;
        }
        chunks.push(c);
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        resolveP({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', (e) => fail(unreachable(kc, e.message)));
    });
    const onAbort = (): void => fail(unreachable(kc, `no answer within ${timeoutMs} ms`));
    if (signal.aborted) return onAbort();
    signal.addEventListener('abort', onAbort, { once: true });
    req.on('close', () => signal.removeEventListener('abort', onAbort));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code ?? '';
      if (TLS_VERIFY_CODES.has(code)) {
        // Code 7, not 11: retrying cannot help; the kubeconfig's CA (or
        // tls-server-name, or server address) does not match the server.
        fail(
          new CniError(
            Code.InvalidConfig,
            `the Kubernetes API at ${kc.server} failed TLS verification: ${e.message}`,
            `check the cluster's certificate-authority, tls-server-name and server in kubeconfig ${kc.path}`,
          ),
        );
        return;
      }
      fail(unreachable(kc, code ? `${code} (${e.message})` : e.message));
    });
    req.end();
  });
}

function statusText(body: string): string {
  try {
    const s = StatusSchema.safeParse(JSON.parse(body));
    if (s.success && s.data.message) return s.data.message.slice(0, 300);
  } catch {
    // not a Status
  }
  return '';
}

/** Turns a non-200 reply into the error a runtime can act on. */
function replyError(kc: Kubeconfig, what: string, path: string, r: Reply): CniError {
  const apiSays = statusText(r.body);
  const details = [apiSays && `the API says: ${apiSays}`, `kubeconfig ${kc.path}`].filter(Boolean).join('; ');
  if (r.status === 401) {
    return new CniError(
      Code.InvalidConfig,
      `the Kubernetes API at ${kc.server} refused the credentials of the kubeconfig (401 Unauthorized): the token or client certificate is missing, invalid or expired`,
      details,
    );
  }
  if (r.status === 403) {
    return new CniError(
      Code.InvalidConfig,
      `the Kubernetes API at ${kc.server} forbids reading ${what} (403 Forbidden): the kubeconfig's user needs "get" on pods and namespaces`,
      details,
    );
  }
  if (r.status === 404) {
    // Code 7, not 3: code 3 ("container unknown") is about CNI_CONTAINERID,
    // which the runtime does know. A pod the API has never heard of means the
    // kubeconfig points at another cluster than the one that scheduled the pod
    // (or CNI_ARGS names a pod that does not exist): a configuration problem,
    // which no retry can fix.
    return new CniError(Code.InvalidConfig, `${what} not found in the Kubernetes API at ${kc.server}`, details);
  }
  if (r.status === 429 || r.status >= 500) return unreachable(kc, `GET ${path}: HTTP ${r.status}${apiSays ? ` (${apiSays})` : ''}`);
  return new CniError(Code.InvalidConfig, `the Kubernetes API at ${kc.server} answered GET ${path} with HTTP ${r.status}`, details);
}

function decode<T extends z.ZodMiniType>(kc: Kubeconfig, schema: T, what: string, r: Reply): z.output<T> {
  let json: unknown;
  try {
    json = JSON.parse(r.body);
  } catch {
    throw new CniError(Code.InvalidConfig, `the Kubernetes API at ${kc.server} answered with something other than JSON for ${what}`, `kubeconfig ${kc.path}`);
  }
  const p = schema.safeParse(json);
  if (!p.success) {
    const issues = formatIssues(p.error, what);
    throw new CniError(Code.InvalidConfig, `the Kubernetes API at ${kc.server} answered with an unexpected ${what}: ${issues.split('; ')[0]}`, issues);
  }
  return p.data;
}

function checkLabels(labels: Record<string, string>, where: string): void {
  for (const [k, v] of Object.entries(labels)) {
    const why = validateLabelKey(k) ?? validateLabelValue(v);
    if (why) throw new CniError(Code.InvalidConfig, `${where}[${JSON.stringify(k)}]: ${why}`);
  }
}

export interface FetchOptions {
  /** Budget for both requests together; default 3000 ms. */
  timeoutMs?: number;
}

/**
 * Reads the pod `namespace/name` and its namespace from the Kubernetes API and
 * builds its Identity. Errors: a bad name (before any request), credentials
 * refused (401/403), pod not found (404) or invalid data → CniError 7; API
 * unreachable, timed out, 429 or 5xx → CniError 11.
 */
export async function fetchIdentity(kc: Kubeconfig, namespace: string, name: string, { timeoutMs = DEFAULT_TIMEOUT_MS }: FetchOptions = {}): Promise<Identity> {
  const nsWhy = validateNamespace(namespace);
  if (nsWhy) throw new CniError(Code.InvalidConfig, `CNI_ARGS K8S_POD_NAMESPACE: ${nsWhy}`);
  const nameWhy = validatePodName(name);
  if (nameWhy) throw new CniError(Code.InvalidConfig, `CNI_ARGS K8S_POD_NAME: ${nameWhy}`);

  const ns = encodeURIComponent(namespace);
  const podPath = `/api/v1/namespaces/${ns}/pods/${encodeURIComponent(name)}`;
  const nsPath = `/api/v1/namespaces/${ns}`;
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), timeoutMs);
  let podReply: Reply;
  let nsReply: Reply;
  try {
    // Both at once; the first failure cancels the other.
    [podReply, nsReply] = await Promise.all(
      [podPath, nsPath].map((p) =>
        get(kc, p, ac.signal, timeoutMs).catch((e: unknown) => {
          ac.abort();
          throw e;
        }),
      ),
    ) as [Reply, Reply];
  } finally {
    clearTimeout(timer);
  }
  const podWhat = `pod ${namespace}/${name}`;
  // The pod first: its 404 is the more telling one when both are missing.
  if (podReply.status !== 200) throw replyError(kc, podWhat, podPath, podReply);
  if (nsReply.status !== 200) throw replyError(kc, `namespace ${namespace}`, nsPath, nsReply);
  const pod = decode(kc, PodSchema, 'pod', podReply);
  const nsObj = decode(kc, NamespaceSchema, 'namespace', nsReply);
  if (pod.metadata.namespace !== namespace || pod.metadata.name !== name || nsObj.metadata.name !== namespace) {
    throw new CniError(Code.InvalidConfig, `the Kubernetes API at ${kc.server} answered for ${podWhat} with another object`, `got pod ${pod.metadata.namespace}/${pod.metadata.name}, namespace ${nsObj.metadata.name}`);
  }

  return identityOf(pod, nsObj.metadata.labels ?? {}, podWhat);
}

/**
 * A Pod object of the API (and its namespace's labels) as an Identity: the
 * same checks whether the pod came from one GET (fetchIdentity) or from the
 * agent's informers. Throws CniError 7 naming the object and field.
 */
export function identityFromApiPod(podObj: unknown, namespaceLabels: Record<string, string>): Identity {
  const p = PodSchema.safeParse(podObj);
  if (!p.success) throw new CniError(Code.InvalidConfig, 'Kubernetes API pod: not a valid Pod', rootless(formatIssues(p.error, '')));
  return identityOf(p.data, namespaceLabels, `pod ${p.data.metadata.namespace}/${p.data.metadata.name}`);
}

function identityOf(pod: z.output<typeof PodSchema>, namespaceLabels: Record<string, string>, podWhat: string): Identity {
  const { namespace, name } = pod.metadata;
  // Validated here with the API's field names, so a message points at the
  // object to fix; buildIdentity checks it all again.
  const labels = pod.metadata.labels ?? {};
  checkLabels(labels, `Kubernetes API ${podWhat}: metadata.labels`);
  checkLabels(namespaceLabels, `Kubernetes API namespace ${namespace}: metadata.labels`);
  const workload: z.output<typeof WorkloadSchema> = { namespace, name, labels, namespaceLabels, ports: [] };
  const sa = pod.spec.serviceAccountName;
  if (sa) {
    const why = validatePodName(sa);
    if (why) throw new CniError(Code.InvalidConfig, `Kubernetes API ${podWhat}: spec.serviceAccountName: ${why}`);
    workload.serviceAccount = sa;
  }
  (pod.spec.containers ?? []).forEach((c, ci) => {
    (c.ports ?? []).forEach((p, pi) => {
      const port: z.output<typeof WorkloadSchema>['ports'][number] = { containerPort: p.containerPort, protocol: p.protocol ?? 'TCP' };
      if (p.name) {
        const why = validatePortName(p.name);
        if (why) throw new CniError(Code.InvalidConfig, `Kubernetes API ${podWhat}: spec.containers[${ci}].ports[${pi}].name: ${why}`);
        port.name = p.name;
      }
      workload.ports.push(port);
    });
  });
  try {
    return buildIdentity(workload);
  } catch (e) {
    if (e instanceof CniError) throw new CniError(e.code, `Kubernetes API ${podWhat}: ${e.message}`, e.details);
    throw e;
  }
}

const PolicySection = z.looseObject({ policy: z.optional(z.looseObject({ kubeconfig: z.optional(z.string().check(z.minLength(1))) })) });

/**
 * The identity from the Kubernetes API, or undefined when the config has no
 * `policy.kubeconfig` or CNI_ARGS lacks K8S_POD_NAMESPACE / K8S_POD_NAME.
 */
export async function identityFromKubernetes(config: Record<string, unknown>, args: CniArgs, opts: FetchOptions = {}): Promise<Identity | undefined> {
  const p = PolicySection.safeParse(config);
  if (!p.success) throw new CniError(Code.InvalidConfig, 'invalid policy configuration', rootless(formatIssues(p.error, '')));
  const path = p.data.policy?.kubeconfig;
  const namespace = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  if (path === undefined || !namespace || !name) return undefined;
  // As policy.dir: the runtime's working directory is no anchor for a path.
  checkedPath(path, 'policy.kubeconfig');
  return fetchIdentity(loadKubeconfig(path), namespace, name, opts);
}

