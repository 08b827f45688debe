// The node-network programmer's vocabulary: what the agent hands it (one
// NodeInfo per Node object of the API), how it is configured, and what one
// reconcile reports back. Pure types: no import reaches the kernel.
import type { ExecResult } from '../../sys/exec.js';

/**
 * A Node as the programmer needs it. The agent converts a V1Node into this:
 *   name               metadata.name
 *   podCIDRs           spec.podCIDRs (or [spec.podCIDR] on old clusters)
 *   addresses          status.addresses (type "InternalIP", "ExternalIP", "Hostname", ...)
 *   wireguardPublicKey metadata.annotations["nhi-cni.io/wireguard-public-key"]
 * Everything here comes from the API and is validated before it reaches a
 * command: a node with a bad field is refused (named in the report), the
 * others are still programmed.
 */
export interface NodeInfo {
  name: string;
  podCIDRs: string[];
  addresses: { type: string; address: string }[];
  wireguardPublicKey?: string;
}

/** The annotation a node publishes its WireGuard public key in. */
export const WIREGUARD_KEY_ANNOTATION = 'nhi-cni.io/wireguard-public-key';

export type Overlay = 'vxlan' | 'routes' | 'none';
export type Encryption = 'none' | 'wireguard';

/** Runs one program with an argument array (and stdin); `sys/exec.run` by default. Tests wrap it to run inside a namespace. */
export type Exec = (file: string, args: string[], input?: string) => Promise<ExecResult>;

export interface NodeNetworkOptions {
  /** This node's name (metadata.name of its Node). */
  self: string;
  overlay: Overlay;
  /** The underlay address of this node; default: its first InternalIP. */
  nodeIP?: string;
  /** UDP port of VXLAN (default 4789 in the agent). */
  vxlanPort: number;
  /** VXLAN network identifier (1 .. 2^24-1). */
  vni: number;
  /** The underlay MTU; default: the MTU of the device holding nodeIP. */
  mtu?: number;
  encryption: Encryption;
  /** UDP port of WireGuard; default 51871 (Cilium's: clear of a host's own wg0 on 51820). */
  wireguardPort?: number;
  /** Where the WireGuard private key is kept (`<stateDir>/wireguard.key`). */
  stateDir: string;
  exec?: Exec;
}

/** A node that is not (or not fully) programmed, and why: for the agent's log and events. */
export interface Refusal {
  node: string;
  reason: string;
}

export interface Report {
  overlay: Overlay;
  encryption: Encryption;
  nodeIP: string;
  underlayDevice: string;
  underlayMtu: number;
  podMtu: number;
  /** WireGuard: this node's public key (to publish in the annotation). */
  publicKey?: string;
  /** Remote nodes whose pod CIDRs are routed. */
  programmed: { node: string; nodeIP: string; podCIDRs: string[] }[];
  refused: Refusal[];
  /** How many kernel objects were added, changed or removed. */
  changes: number;
  /** Commands that failed (the next reconcile retries them); empty when all applied. */
  errors: string[];
}
