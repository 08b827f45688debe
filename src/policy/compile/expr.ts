// The nft JSON expressions the compiler's rules are made of.
import { parseCidr } from '../../net/ip.js';
import type { Fam } from './types.js';

export const addrType = (fam: Fam) => (fam === 4 ? 'ipv4_addr' : 'ipv6_addr');
export const addrField = (fam: Fam, field: 'saddr' | 'daddr') => ({ payload: { protocol: fam === 4 ? 'ip' : 'ip6', field } });
export const l4proto = { meta: { key: 'l4proto' } };
export const dport = { payload: { protocol: 'th', field: 'dport' } };
export const match = (left: unknown, right: unknown, op = '==') => ({ match: { op, left, right } });
/** `ip saddr vmap @eg4`: look the key up in a verdict map and take the verdict found. */
export const vmap = (key: unknown, map: string) => ({ vmap: { key, data: `@${map}` } });
export const jump = (chain: string) => ({ jump: { target: chain } });
/**
 * `meta nftrace set 1`: marks a denied (or, in audit mode, would-be-denied)
 * packet for `nft monitor trace`, which `nhi-cni observe` reads: flow
 * visibility that works in any network namespace, without the kernel log.
 * The kernel sends trace events only while someone listens: free otherwise.
 */
export const TRACE = { mangle: { key: { meta: { key: 'nftrace' } }, value: 1 } };
/** What logs a denied connection: at most 10 a second (bursts of 20), so a flood cannot flood the log. */
export const LOG_RATE = { limit: { rate: 10, per: 'second', burst: 20 } };

export function prefix(cidr: string) {
  const c = parseCidr(cidr)!;
  const [addr] = cidr.split('/');
  return { prefix: { addr, len: c.prefix } };
}
