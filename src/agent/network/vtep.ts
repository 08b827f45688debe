// The VXLAN addressing scheme (flannel's): a node's VTEP address in each
// family is the network address of its pod CIDR of that family (10.244.3.0,
// fd00:10:244:3::), which host-local never hands to a pod; its VTEP MAC is
// derived from the node name, so no node has to publish it and every node
// computes the same MAC for a peer. A hash of the name, with the locally
// administered bit set and the multicast bit cleared: 46 random bits, so a
// collision between two nodes of one cluster is out of practical reach
// (~n²/2^47). The MTU rule lives here too.
import { createHash } from 'node:crypto';
import { formatIp, networkOf, type Cidr, type Family } from '../../net/ip.js';
import type { Encryption, Overlay } from './types.js';

export function vtepMac(node: string): string {
  const h = createHash('sha256').update(`nhi-cni vtep\0${node}`).digest();
  h[0] = (h[0]! & 0xfe) | 0x02;
  return [...h.subarray(0, 6)].map((b) => b.toString(16).padStart(2, '0')).join(':');
}

/** The node's VTEP address of `family`: the network address of its first pod CIDR of that family. */
export function vtepIp(podCidrs: Cidr[], family: Family): string | undefined {
  const c = podCidrs.find((p) => p.ip.family === family);
  return c ? formatIp(networkOf(c)) : undefined;
}

/** Bytes of encapsulation: VXLAN over IPv4 (20 IP + 8 UDP + 8 VXLAN + 14 Ethernet), over IPv6 (+20); WireGuard (40 IPv6 + 8 UDP + 32 WireGuard, taken for both families as Cilium does). */
export const OVERHEAD = { vxlan4: 50, vxlan6: 70, wireguard: 80 } as const;

/** The pod MTU for an underlay MTU: what is left once the tunnel's headers fit under it. */
export function podMtuFor(underlayMtu: number, overlay: Overlay, encryption: Encryption, underlayFamily: Family): number {
  if (overlay === 'none') return underlayMtu;
  if (encryption === 'wireguard') return underlayMtu - OVERHEAD.wireguard;
  if (overlay === 'vxlan') return underlayMtu - (underlayFamily === 6 ? OVERHEAD.vxlan6 : OVERHEAD.vxlan4);
  return underlayMtu;
}
