// CNI_ARGS: "K=V;K=V" (SPEC.md section 2, CONVENTIONS.md "CNI_ARGS"). As in the
// reference library, a key a plugin does not know is an error unless the string
// carries IgnoreUnknown=1 (kubelet and containerd always send it).
import { CniError, Code } from './errors.js';

/** Keys every nhi-cni plugin type understands. */
export const COMMON_ARG_KEYS = [
  'IgnoreUnknown',
  'K8S_POD_NAMESPACE',
  'K8S_POD_NAME',
  'K8S_POD_INFRA_CONTAINER_ID',
  'K8S_POD_UID',
] as const;

export type CniArgs = Record<string, string>;

export function parseCniArgs(raw: string, known: readonly string[]): CniArgs {
  const out: CniArgs = {};
  if (!raw) return out;
  // Empty segments (a trailing ";") are tolerated; the reference refuses them,
  // which only ever breaks hand-written CNI_ARGS.
  for (const pair of raw.split(';')) {
    if (pair === '') continue;
    const kv = pair.split('=');
    if (kv.length !== 2 || kv[0] === '') {
      throw new CniError(Code.InvalidEnv, `CNI_ARGS: invalid pair ${JSON.stringify(pair)}`, 'CNI_ARGS must be K=V pairs separated by ";"');
    }
    out[kv[0]!] = kv[1]!;
  }
  // A boolean, as in the reference: 1/true ignore unknown keys, 0/false do not.
  const ignore = Object.entries(out).some(([k, v]) => k.toLowerCase() === 'ignoreunknown' && /^(1|true)$/i.test(v));
  const allowed = new Set<string>([...COMMON_ARG_KEYS, ...known]);
  const unknown = Object.keys(out).filter((k) => !allowed.has(k) && k.toLowerCase() !== 'ignoreunknown');
  if (unknown.length > 0 && !ignore) {
    throw new CniError(Code.InvalidEnv, `CNI_ARGS: unknown args [${unknown.join(' ')}]`, 'add IgnoreUnknown=1 to CNI_ARGS to let unknown keys pass');
  }
  return out;
}

/**
 * "namespace/name" from CNI_ARGS K8S_POD_NAMESPACE and K8S_POD_NAME, for log
 * lines: read leniently (a failure is logged whatever the args hold), and only
 * values shaped like Kubernetes names.
 */
export function podOfArgs(args: string): string | undefined {
  const get = (k: string) => /^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$/.exec(args.split(';').find((p) => p.startsWith(`${k}=`))?.slice(k.length + 1) ?? '')?.[0];
  const ns = get('K8S_POD_NAMESPACE');
  const name = get('K8S_POD_NAME');
  return ns && name ? `${ns}/${name}` : undefined;
}
