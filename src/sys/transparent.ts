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

/** struct sockaddr_in / sockaddr_in6 for ip:port (ip in dotted or canonical IPv6 text). */
function sockaddr(ip: string, port: number): Buffer {
  if (!ip.includes(':')) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    const parts = ip.split('.').map(Number);
    if (parts.length !== 4 || parts.some((x) => !Number.isInteger(x) || x < 0 || x > 255)) throw new Error(`not an IPv4 address: ${ip}`);
    parts.forEach((x, i) => b.writeUInt8(x, 4 + i));
    return b;
  }
  const b = Buffer.alloc(28);
  b.writeUInt16LE(AF_INET6, 0);
  b.writeUInt16BE(port, 2);
  const [head, tail] = ip.split('::') as [string, string | undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  if (groups.length !== 8 || groups.some((g) => !/^[0-9a-f]{1,4}$/i.test(g))) throw new Error(`not an IPv6 address: ${ip}`);
  groups.forEach((g, i) => b.writeUInt16BE(parseInt(g, 16), 8 + i * 2));
  return b;
}

/**
 * An unconnected TCP socket bound to `source` (an address of a pod, not of
 * this node), for `socket.connect({ host, port })`. Throws when the kernel
 * refuses (no CAP_NET_ADMIN, no free port in TRANSPARENT_PORTS).
 */
export function transparentSocket(source: string): Socket {
  const c = load();
  const v6 = source.includes(':');
  const addr = sockaddr(source, 0);
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket() failed with errno ${c.errno()}`);
  try {
    const one = Buffer.alloc(4);
    one.writeInt32LE(1, 0);
    if (c.setsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, one, 4) !== 0) {
      throw new Error(`setting IP_TRANSPARENT failed with errno ${c.errno()}`);
    }
    const size = TRANSPARENT_PORTS.to - TRANSPARENT_PORTS.from + 1;
    const start = Math.floor(Math.random() * size);
    for (let i = 0; i < size; i++) {
      addr.writeUInt16BE(TRANSPARENT_PORTS.from + ((start + i) % size), 2);
      if (c.bind(fd, addr, addr.length) === 0) return new Socket({ fd });
      const e = c.errno();
      if (e !== EADDRINUSE) throw new Error(`binding ${source} failed with errno ${e}`);
    }
    throw new Error(`no free port for ${source} in ${TRANSPARENT_PORTS.from}-${TRANSPARENT_PORTS.to}`);
  } catch (e) {
    c.close(fd);
    throw e;
  }
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
  const c = load();
  const v6 = ip.includes(':');
  const addr = sockaddr(ip, port);
  const fd = c.socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new Error(`socket() failed with errno ${c.errno()}`);
  const one = Buffer.alloc(4);
  one.writeInt32LE(1, 0);
  try {
    if (c.setsockopt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, one, 4) !== 0) {
      throw new Error(`setting IP_TRANSPARENT failed with errno ${c.errno()}`);
    }
    // A restarted agent binds again while the last one's connections linger in TIME_WAIT.
    if (c.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, one, 4) !== 0) throw new Error(`setting SO_REUSEADDR failed with errno ${c.errno()}`);
    if (c.bind(fd, addr, addr.length) !== 0) throw Object.assign(new Error(`binding ${ip}:${port} failed with errno ${c.errno()}`), { code: c.errno() === EADDRINUSE ? 'EADDRINUSE' : undefined });
    return fd;
  } catch (e) {
    c.close(fd);
    throw e;
  }
}
