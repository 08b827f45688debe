// The destination a connection had before the node DNATed it: Linux keeps it
// in conntrack and hands it out through getsockopt(SO_ORIGINAL_DST) on the
// accepted socket (IP6T_SO_ORIGINAL_DST for IPv6, same number). Node has no
// API for it; node:ffi calls libc's getsockopt directly (no process, no addon).
// Used by the L7 proxy's egress listener, where one listener serves every
// destination of the pods it stands in for (src/l7/proxy.ts).
import { formatIp } from '../net/ip.js';
import { ffiModule } from './ffi.js';

const SOL_IP = 0;
const SOL_IPV6 = 41;
const SO_ORIGINAL_DST = 80;
const AF_INET = 2;
const AF_INET6 = 10;

type Getsockopt = (fd: number, level: number, name: number, value: Buffer, len: Buffer) => number;
let getsockopt: Getsockopt | undefined;

function load(): Getsockopt {
  if (getsockopt) return getsockopt;
  const { functions } = ffiModule().dlopen('libc.so.6', {
    getsockopt: { arguments: ['int32', 'int32', 'int32', 'pointer', 'pointer'], return: 'int32' },
  }) as unknown as { functions: { getsockopt: Getsockopt } };
  getsockopt = functions.getsockopt;
  return getsockopt;
}

/** 16 bytes (network order) as an IPv6 address in its canonical text (RFC 5952), as Node and the API spell it. */
function v6(b: Buffer): string {
  return formatIp({ family: 6, value: BigInt(`0x${b.toString('hex')}`) });
}

/**
 * The original destination of the TCP connection on socket descriptor `fd`,
 * or undefined when the kernel has none for it (no conntrack entry) or the
 * descriptor is not an IPv4/IPv6 TCP socket. For a connection that was not
 * NATed this is the socket's own local address: the caller compares.
 */
export function originalDestination(fd: number, family: 4 | 6): { ip: string; port: number } | undefined {
  if (!Number.isInteger(fd) || fd < 0) return undefined;
  const value = Buffer.alloc(family === 4 ? 16 : 28);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(value.length, 0);
  if (load()(fd, family === 4 ? SOL_IP : SOL_IPV6, SO_ORIGINAL_DST, value, len) !== 0) return undefined;
  const af = value.readUInt16LE(0);
  const port = value.readUInt16BE(2);
  if (family === 4 && af === AF_INET) return { ip: [...value.subarray(4, 8)].join('.'), port };
  if (family === 6 && af === AF_INET6) return { ip: v6(value.subarray(8, 24)), port };
  return undefined;
}
