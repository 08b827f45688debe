// The options of `nhi-cni agent`: every flag, the environment variable that
// can set it instead (a flag wins), its default, and its validation. Pure (no
// Kubernetes library): the CLI parses and checks them before the agent bundle
// is loaded, so a typo costs nothing and `--help` needs no bundle.
import { hostname } from 'node:os';
import { absolutePathProblem } from '../cni/paths.js';
import { formatCidr, networkOf, parseCidr, parseIp } from '../net/ip.js';
import { quote, validatePodName } from '../policy/names.js';

export const OVERLAYS = ['vxlan', 'routes', 'none'] as const;
export const ENCRYPTIONS = ['none', 'wireguard'] as const;

/** The networking options of the multi-node issue (issue 10): parsed and checked here, used by src/agent/network/. */
export interface NetworkOptions {
  overlay: (typeof OVERLAYS)[number];
  /** This node's underlay address; undefined: the Node object's InternalIP. */
  nodeIp?: string;
  vxlanPort: number;
  vni: number;
  /** The underlay's MTU; undefined: the MTU of the device holding the node IP. Pods get it minus the overhead. */
  mtu?: number;
  encryption: (typeof ENCRYPTIONS)[number];
}

export interface AgentOptions {
  /** A kubeconfig file; undefined: the in-cluster service account. */
  kubeconfig?: string;
  nodeName: string;
  stateDir: string;
  confDir: string;
  /** host-local's data dir for this node's pods (the conflist's ipam.dataDir; /metrics counts it). */
  ipamDataDir: string;
  /** The pods of all nodes, canonical CIDRs, at most one per family. */
  clusterCidrs: string[];
  listen: { host: string; port: number };
  trustDomain: string;
  network: NetworkOptions;
  /** No event, bookmark, watch connection or list of a kind for this long: it is stale, restart it. */
  staleAfterMs: number;
  /** Events closer than this are one burst: one view for the sink. */
  debounceMs: number;
  /** Periodic leak reclaim; 0: off. */
  reclaimIntervalMs: number;
  /** `<stateDir>/agent.sock`: `nhi-cni status`, `ipam check` and the plugin's ADD (who is this pod?) ask the agent here. */
  socketPath: string;
}

/** One flag: its commander spelling, environment variable, help text and default (as text). */
export interface FlagSpec {
  key: keyof RawAgentOptions;
  flags: string;
  env: string;
  help: string;
  default?: string;
}

export type RawAgentOptions = Partial<Record<
  'kubeconfig' | 'nodeName' | 'stateDir' | 'confDir' | 'ipamDataDir' | 'clusterCidr' | 'listen' | 'trustDomain' | 'overlay' | 'nodeIp' | 'vxlanPort' | 'vni' | 'mtu' | 'encryption' | 'staleAfter' | 'debounce' | 'reclaimInterval',
  string
>>;

export const DEFAULT_STATE_DIR = '/var/lib/nhi-cni';
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';

export const AGENT_FLAGS: FlagSpec[] = [
  { key: 'kubeconfig', flags: '--kubeconfig <file>', env: 'KUBECONFIG', help: 'kubeconfig of the API (default: the in-cluster service account)' },
  { key: 'nodeName', flags: '--node-name <name>', env: 'NODE_NAME', help: 'this node, as in the API (default: the host name)' },
  { key: 'stateDir', flags: '--state-dir <dir>', env: 'NHI_CNI_STATE_DIR', help: 'state directory; the agent socket is <dir>/agent.sock', default: DEFAULT_STATE_DIR },
  { key: 'confDir', flags: '--conf-dir <dir>', env: 'NHI_CNI_CONF_DIR', help: 'where 10-nhi-cni.conflist is written once the first sync is applied', default: DEFAULT_CONF_DIR },
  { key: 'ipamDataDir', flags: '--ipam-data-dir <dir>', env: 'NHI_CNI_IPAM_DATA_DIR', help: "host-local's reservations for the node's pods (the conflist's ipam.dataDir)", default: '/var/lib/cni/networks' },
  { key: 'clusterCidr', flags: '--cluster-cidr <cidr[,cidr]>', env: 'NHI_CNI_CLUSTER_CIDR', help: 'the pod addresses of all nodes (IPv4 and/or IPv6)' },
  { key: 'listen', flags: '--listen <addr:port>', env: 'NHI_CNI_LISTEN', help: '/metrics, /healthz, /readyz', default: '127.0.0.1:9190' },
  { key: 'trustDomain', flags: '--trust-domain <domain>', env: 'NHI_CNI_TRUST_DOMAIN', help: 'SPIFFE trust domain of workload ids (spiffe://<domain>/ns/<ns>/sa/<sa>)', default: 'cluster.local' },
  { key: 'overlay', flags: '--overlay <mode>', env: 'NHI_CNI_OVERLAY', help: `pod traffic between nodes: ${OVERLAYS.join(', ')}`, default: 'vxlan' },
  { key: 'nodeIp', flags: '--node-ip <ip>', env: 'NHI_CNI_NODE_IP', help: "this node's underlay address (default: its InternalIP)" },
  { key: 'vxlanPort', flags: '--vxlan-port <port>', env: 'NHI_CNI_VXLAN_PORT', help: 'UDP port of the VXLAN overlay (IANA)', default: '4789' },
  { key: 'vni', flags: '--vni <n>', env: 'NHI_CNI_VNI', help: 'VXLAN network identifier', default: '1' },
  { key: 'mtu', flags: '--mtu <bytes>', env: 'NHI_CNI_MTU', help: "the underlay's MTU (default: the device holding the node IP's); pods get it minus the overlay's overhead (VXLAN 50/70, WireGuard 60/80)" },
  { key: 'encryption', flags: '--encryption <mode>', env: 'NHI_CNI_ENCRYPTION', help: `between nodes: ${ENCRYPTIONS.join(', ')}`, default: 'none' },
  { key: 'staleAfter', flags: '--stale-after <seconds>', env: 'NHI_CNI_STALE_AFTER', help: 'a watch with no sign of life for this long is restarted', default: '120' },
  { key: 'reclaimInterval', flags: '--reclaim-interval <seconds>', env: 'NHI_CNI_RECLAIM_INTERVAL', help: 'how often leaked addresses (proven dead) are released; 0: never', default: '300' },
  { key: 'debounce', flags: '--debounce <ms>', env: 'NHI_CNI_DEBOUNCE_MS', help: 'events this close together are applied as one', default: '100' },
];

export class OptionError extends Error {}

function int(text: string, what: string, min: number, max: number): number {
  if (!/^\d{1,10}$/.test(text) || Number(text) < min || Number(text) > max) throw new OptionError(`${what} ${quote(text)}: must be a whole number from ${min} to ${max}`);
  return Number(text);
}

function dir(text: string, what: string): string {
  const why = absolutePathProblem(text);
  if (why) throw new OptionError(`${what} ${quote(text)} ${why}`);
  return text.replace(/\/+$/, '') || '/';
}

function oneOf<T extends string>(text: string, what: string, allowed: readonly T[]): T {
  if (!(allowed as readonly string[]).includes(text)) throw new OptionError(`${what} ${quote(text)}: must be one of ${allowed.join(', ')}`);
  return text as T;
}

export function parseListen(text: string): { host: string; port: number } {
  const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  if (!m) throw new OptionError(`--listen ${quote(text)}: must be ADDR:PORT ([ADDR]:PORT for IPv6)`);
  if (!parseIp(m[1]!) && m[1] !== 'localhost') throw new OptionError(`--listen ${quote(text)}: ${quote(m[1]!)} is not an IP address`);
  return { host: m[1]!, port: int(m[2]!, '--listen port', 1, 65535) };
}

export function parseClusterCidrs(text: string): string[] {
  const out: string[] = [];
  const families = new Set<number>();
  for (const part of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const c = parseCidr(part);
    if (!c) throw new OptionError(`--cluster-cidr ${quote(part)}: not a CIDR (e.g. 10.244.0.0/16 or fd00:10:244::/56)`);
    if (families.has(c.ip.family)) throw new OptionError(`--cluster-cidr: at most one IPv${c.ip.family} range`);
    families.add(c.ip.family);
    out.push(formatCidr({ ip: networkOf(c), prefix: c.prefix }));
  }
  return out;
}

/** SPIFFE trust domain: lowercase letters, digits, '.', '-', '_' (SPIFFE-ID spec §2.1). */
export function validateTrustDomain(td: string): string | undefined {
  if (td.length === 0 || td.length > 255 || !/^[a-z0-9._-]+$/.test(td)) return `--trust-domain ${quote(td)}: must be at most 255 of a-z, 0-9, '.', '-' and '_'`;
  return undefined;
}

/**
 * Options from flags (`raw`, as commander gives them) and the environment.
 * A flag wins over its variable; an empty variable counts as unset. Throws
 * OptionError naming the flag.
 */
export function agentOptions(raw: RawAgentOptions, env: Record<string, string | undefined> = process.env): AgentOptions {
  const get = (key: keyof RawAgentOptions): string | undefined => {
    const spec = AGENT_FLAGS.find((f) => f.key === key)!;
    const v = raw[key] ?? (env[spec.env] || undefined);
    return v ?? spec.default;
  };
  const kubeconfig = get('kubeconfig');
  if (kubeconfig !== undefined) {
    const why = absolutePathProblem(kubeconfig);
    if (why) throw new OptionError(`--kubeconfig ${quote(kubeconfig)} ${why}`);
  }
  const nodeName = get('nodeName') ?? hostname();
  const nodeWhy = validatePodName(nodeName);
  if (nodeWhy) throw new OptionError(`--node-name: ${nodeWhy}`);
  const stateDir = dir(get('stateDir')!, '--state-dir');
  const trustDomain = get('trustDomain')!;
  const tdWhy = validateTrustDomain(trustDomain);
  if (tdWhy) throw new OptionError(tdWhy);
  const nodeIp = get('nodeIp');
  if (nodeIp !== undefined && !parseIp(nodeIp)) throw new OptionError(`--node-ip ${quote(nodeIp)}: not an IP address`);
  const mtu = get('mtu');
  const network: NetworkOptions = {
    overlay: oneOf(get('overlay')!, '--overlay', OVERLAYS),
    vxlanPort: int(get('vxlanPort')!, '--vxlan-port', 1, 65535),
    vni: int(get('vni')!, '--vni', 1, 16777215),
    encryption: oneOf(get('encryption')!, '--encryption', ENCRYPTIONS),
  };
  if (nodeIp !== undefined) network.nodeIp = nodeIp;
  if (mtu !== undefined) network.mtu = int(mtu, '--mtu', 1280, 65535);
  const out: AgentOptions = {
    nodeName,
    stateDir,
    confDir: dir(get('confDir')!, '--conf-dir'),
    ipamDataDir: dir(get('ipamDataDir')!, '--ipam-data-dir'),
    clusterCidrs: parseClusterCidrs(get('clusterCidr') ?? ''),
    listen: parseListen(get('listen')!),
    trustDomain,
    network,
    staleAfterMs: int(get('staleAfter')!, '--stale-after', 2, 86400) * 1000,
    debounceMs: int(get('debounce')!, '--debounce', 0, 60000),
    reclaimIntervalMs: int(get('reclaimInterval')!, '--reclaim-interval', 0, 86400) * 1000,
    socketPath: `${stateDir === '/' ? '' : stateDir}/agent.sock`,
  };
  if (kubeconfig !== undefined) out.kubeconfig = kubeconfig;
  return out;
}
