// Validation of everything a Node object contributes before it can reach
// `ip`, `bridge` or `wg`: names, CIDRs, addresses, keys. Nodes come from the
// API; a bad one is refused by name, it never becomes an argument.
import { formatIp, networkOf, parseCidr, parseIp, type Cidr, type Ip } from '../../net/ip.js';

// RFC 1123 subdomain, as Kubernetes validates metadata.name of a Node.
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function nodeNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string' || name.length === 0) return 'has no name';
  if (name.length > 253 || !DNS_SUBDOMAIN.test(name)) return `name ${JSON.stringify(name.slice(0, 80))} is not a DNS subdomain (RFC 1123)`;
  return undefined;
}

/** A pod CIDR as the kernel takes it: a network address (no host bits) and a prefix. */
export function parsePodCidr(text: unknown): Cidr | string {
  if (typeof text !== 'string') return 'pod CIDR is not a string';
  const c = parseCidr(text);
  if (!c) return `pod CIDR ${JSON.stringify(text.slice(0, 60))} is not a CIDR`;
  const net = networkOf(c);
  if (net.value !== c.ip.value) return `pod CIDR ${text} has host bits set (the network is ${formatIp(net)}/${c.prefix})`;
  // A pod CIDR shorter than /8 (v4) or /16 (v6) would route most of the internet into the tunnel.
  if (c.prefix < (c.ip.family === 4 ? 8 : 16)) return `pod CIDR ${text} is wider than a node's share can be`;
  return c;
}

/** A unicast address usable as a tunnel endpoint. */
export function parseNodeAddress(text: unknown): Ip | undefined {
  if (typeof text !== 'string') return undefined;
  const ip = parseIp(text);
  if (!ip) return undefined;
  if (ip.family === 4) {
    const top = Number(ip.value >> 24n);
    if (ip.value === 0n || top === 127 || top >= 224) return undefined;
  } else if (ip.value === 0n || ip.value === 1n || ip.value >> 120n === 0xffn) return undefined;
  return ip;
}

const KEY = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

/** A WireGuard key: standard base64 of exactly 32 bytes (44 characters). */
export function validWireguardKey(k: unknown): k is string {
  return typeof k === 'string' && KEY.test(k);
}
