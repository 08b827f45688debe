// Outgoing TCP sockets that carry another host's address as their source:
// the L7 proxy connects to a pod on another node "as" the pod whose request
// it forwards, so that node's kernel judges the pod's ingress policy against
// the real source, and the pod sees who asked (docs/l7.md, "Original source").
//
// Linux allows it to a socket with IP_TRANSPARENT (CAP_NET_ADMIN), bound to
// the foreign address before connecting. Node has neither the option nor a
// way to bind before its own socket() call, so the socket is made here through
// node:ffi (socket, setsockopt, bind: no process) and handed to net.Socket,
// which connects it as any other (connect event, errors, timeouts).
//
// The replies are addressed to the pod, not to the node: the node delivers
// them to this socket only with the routing the L7 controller installs
// (transparentRouting in src/l7/redirect.ts: packets of a transparent socket
// are marked in prerouting and routed to the local table).
//
// The source port is chosen from TRANSPARENT_PORTS, above Linux's default
// ephemeral range (32768-60999, which pods use for their own connections): the
// pod's own redirected connection to the same destination has a conntrack
// entry with the pod's port, and an upstream connection with the same four
// addresses would be taken for it.
import { Socket } from 'node:net';
import { parseIp } from '../net/ip.js';
import { errnoReader, ffiModule } from './ffi.js';

const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_IP = 0;
const SOL_IPV6 = 41;
const IP_TRANSPARENT = 19;
const IPV6_TRANSPARENT = 75;
const EADDRINUSE = 98;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;

export const TRANSPARENT_PORTS = { from: 61000, to: 65535 };

interface Libc {
  socket(domain: number, type: number, protocol: number): number;
  setsockopt(fd: number, level: number, name: number, value: Buffer, len: number): number;
  bind(fd: number, addr: Buffer, len: number): number;
  close(fd: number): number;
  errno(): number;
}
let libc: Libc | undefined;

function load(): Libc {
  if (libc) return libc;
  const { functions: f } = ffiModule().dlopen('libc.so.6', {
    socket: { arguments: ['int32', 'int32', 'int32'], return: 'int32' },
    setsockopt: { arguments: ['int32', 'int32', 'int32', 'pointer', 'uint32'], return: 'int32' },
    bind: { arguments: ['int32', 'pointer', 'uint32'], return: 'int32' },
    close: { arguments: ['int32'], return: 'int32' },
  }) as unknown as { functions: Omit<Libc, 'errno'> };
  libc = {
    socket: (d, t, p) => f.socket(d, t, p),
    setsockopt: (fd, l, n, v, len) => f.setsockopt(fd, l, n, v, len),
    bind: (fd, a, len) => f.bind(fd, a, len),
    close: (fd) => f.close(fd),
    errno: errnoReader(),
  };
  return libc;
}

/** struct sockaddr_in / sockaddr_in6 for ip:port (parsed as everywhere else: src/net/ip.ts). */
function sockaddr(ip: string, port: number): Buffer {
  const a = parseIp(ip);
  if (!a) throw new Error(`not an IP address: ${ip}`);
  const b = Buffer.alloc(a.family === 4 ? 16 : 28);
  b.writeUInt16LE(a.family === 4 ? AF_INET : AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  // The address in network byte order: at offset 4 (sin_addr) or 8 (sin6_addr, after flowinfo).
  const bytes = a.family === 4 ? 4 : 16;
  const at = a.family === 4 ? 4 : 8;
  for (let i = 0; i < bytes; i++) b.writeUInt8(Number((a.value >> BigInt(8 * (bytes - 1 - i))) & 0xffn), at + i);
  return b;
}

const ONE = Buffer.from([1, 0, 0, 0]); // int 1, little-endian (x86-64, arm64)

/**
 * A non-blocking TCP socket with IP_TRANSPARENT (for `addr`'s family), given
 * to `then` with its descriptor; closed again when `then` throws.
 */
function transparentFd<T>(addr: Buffer, then: (c: Libc, fd: number) => T): T {
  const c = load();
  const v6 = addr.readUInt16LE(0) === AF_INET6;
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket() failed with errno ${c.errno()}`);
  try {
    if (c.setsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, ONE, 4) !== 0) {
      throw new Error(`setting IP_TRANSPARENT failed with errno ${c.errno()}`);
    }
    return then(c, fd);
  } catch (e) {
    c.close(fd);
    throw e;
  }
}

/**
 * An unconnected TCP socket bound to `source` (an address of a pod, not of
 * this node), for `socket.connect({ host, port })`. Throws when the kernel
 * refuses (no CAP_NET_ADMIN, no free port in TRANSPARENT_PORTS).
 */
export function transparentSocket(source: string): Socket {
  const addr = sockaddr(source, 0);
  return transparentFd(addr, (c, fd) => {
    const size = TRANSPARENT_PORTS.to - TRANSPARENT_PORTS.from + 1;
    const start = Math.floor(Math.random() * size);
    for (let i = 0; i < size; i++) {
      addr.writeUInt16BE(TRANSPARENT_PORTS.from + ((start + i) % size), 2);
      if (c.bind(fd, addr, addr.length) === 0) return new Socket({ fd });
      const e = c.errno();
      if (e !== EADDRINUSE) throw new Error(`binding ${source} failed with errno ${e}`);
    }
    throw new Error(`no free port for ${source} in ${TRANSPARENT_PORTS.from}-${TRANSPARENT_PORTS.to}`);
  });
}

/**
 * A TCP socket descriptor bound to `ip`:`port`, an address of a pod, not of
 * this node, for `server.listen({ fd })`: it gets the connections the node
 * delivers locally to that address (the L7 proxy's Service path: packets
 * DNATed to the pod by a Service and routed to the node by L7_DIVERT's mark).
 * The caller owns the descriptor once it is returned. Throws when the kernel
 * refuses (no CAP_NET_ADMIN, address in use).
 */
export function transparentListenFd(ip: string, port: number): number {
  const addr = sockaddr(ip, port);
  return transparentFd(addr, (c, fd) => {
    // A restarted agent binds again while the last one's connections linger in TIME_WAIT.
    if (c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, ONE, 4) !== 0) throw new Error(`setting SO_REUSEADDR failed with errno ${c.errno()}`);
    if (c.bind(fd, addr, addr.length) !== 0) {
      const e = c.errno();
      throw Object.assign(new Error(`binding ${ip}:${port} failed with errno ${e}`), e === EADDRINUSE ? { code: 'EADDRINUSE' } : {});
    }
    return fd;
  });
}
