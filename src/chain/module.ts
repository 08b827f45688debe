// The shape of the chain: a module (IPAM, bridge, veth, masquerade, the port
// guard, policy) adds its own part to an ADD's plan, its own part to the plan
// that takes an attachment down (DEL, GC, an ADD's rollback), and checks its
// own part on CHECK. The runner walks one ordered list of them (CHAIN in
// runner.ts) and applies the plan with as few processes as it can.
import type { IpConfig, Result, Route } from '../cni/result.js';
import type { CniRequest } from '../cni/request.js';
import type { Attachment } from '../cni/attachments.js';
import type { Identity, Policy } from '../policy/model.js';
import type { PolicyEngine } from '../policy/engine/index.js';
import type { CniConfig } from './config.js';
import type { IpamStep } from './ipam/module.js';
import type { Plan } from './plan.js';
import type { ReleaseOutcome } from './reclaim.js';
import type { RunCache } from './state.js';
import type { GuardedPort } from './spoofcheck.js';

/** One CNI call: its configuration, request and what the plugin made of them. */
export interface Chain {
  cfg: CniConfig;
  ipam: IpamStep;
  req: CniRequest;
  /** "namespace/name" from CNI_ARGS K8S_POD_NAMESPACE and K8S_POD_NAME, when given. */
  pod?: string;
  /** The workload identity (capability io.nhi-cni/workload, args.cni.labels), on ADD. */
  identity?: Identity;
  /** The policy engine of the `policy` section: enforcement is on when present. */
  policy?: PolicyEngine;
  /** The manifests as read for this ADD (undefined: the ones last applied). */
  policies?: Policy[];
}

/**
 * What every log line of an attachment carries: network, container, interface,
 * namespace, and the pod (CNI_ARGS K8S_POD_*, else the workload identity).
 */
export function subject(c: Chain): Record<string, unknown> {
  const { containerId, ifname, netns } = c.req.env;
  const pod = c.pod ?? (c.identity ? `${c.identity.namespace}/${c.identity.name}` : undefined);
  return { network: c.req.config.name, containerId, ifname, netns, ...(pod ? { pod } : {}) };
}

/** An ADD in progress: filled in by the modules, in the chain's order. */
export interface AddContext {
  readonly c: Chain;
  readonly cache: RunCache;
  /** The host-side veth name (a name clash on a retry picks another). */
  hostVeth: string;
  /** The pod's MAC (the runtime's, or the one its addresses imply). */
  mac: string;
  /** Set by IPAM's prepare. */
  ipam?: { result: Result; reclaimed?: ReleaseOutcome };
  /** A retry after another ADD created the bridge between our look and our batch. */
  bridgeSeen: boolean;
  /** Set by the bridge and veth modules: the host batch lines that create links (to recognise races). */
  bridgeCreateLine?: number;
  veth?: { containerMac: string; createLine: number; routes: Route[] };
}

/** The addresses IPAM gave an ADD in progress. */
export const addedIps = (x: AddContext): IpConfig[] => x.ipam?.result.ips ?? [];

/** The port guard of an ADD in progress, for a host veth name. */
export function guardedPort(x: AddContext, hostVeth = x.hostVeth): GuardedPort {
  return { hostVeth, mac: x.mac, ips: addedIps(x).map((i) => i.address.split('/')[0]!), level: x.c.cfg.guard };
}

/** An attachment to take down: what DEL, GC or a rollback knows of it. */
export interface TeardownContext {
  readonly c: Chain;
  readonly containerId: string;
  readonly ifname: string;
  /** The host-side veth to delete (undefined: not known, or not ours to delete). */
  readonly hostVeth?: string;
  /** The pod's namespace, to delete the pod's side from inside when the host side is unknown ('' for none). */
  readonly netns: string;
  /** The attachment's addresses (CIDR form), from its record or prevResult. */
  readonly ips: string[];
  /** Port guards to remove. */
  readonly ports: GuardedPort[];
  /** False when nothing of the attachment reached nftables (a rollback before the transaction): no policy change. */
  readonly nft: boolean;
  /** False in GC: IPAM's gc releases every stale address in one go. */
  readonly release: boolean;
}

/** CHECK of one attachment against its prevResult. */
export interface CheckContext {
  readonly c: Chain;
  readonly prev: Result;
  readonly hostVeth: string;
}

/** GC of a network: the attachments the runtime says are valid (undefined: not said). */
export interface GcContext {
  readonly c: Chain;
  readonly valid: Attachment[] | undefined;
}

export interface ChainModule {
  readonly name: 'ipam' | 'bridge' | 'veth' | 'masq' | 'macspoof' | 'policy';
  /** ADD, before any plan: what the plan needs decided first (IPAM's addresses). */
  prepare?(x: AddContext): Promise<void>;
  /** ADD: its part of the plan. Called again on a retry, with a new plan. */
  add(x: AddContext, plan: Plan): void | Promise<void>;
  /** Its part of taking the attachment down; tolerates what is already gone. */
  del(t: TeardownContext, plan: Plan): void;
  /** CHECK: throws code 103 (or the module's own code) naming what is wrong. */
  check(k: CheckContext): Promise<void>;
  /** GC: its network-wide part, beside the stale attachments' own teardown. */
  gc?(g: GcContext, plan: Plan): void;
}
