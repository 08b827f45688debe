// Throw-away network namespaces for tests: a "node" namespace where the plugins
// run (so the machine's own links and firewall are never touched) and "pod"
// namespaces the plugins wire. Every namespace a test makes is deleted in
// cleanup, also when the test fails.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';

export interface Netns {
  name: string;
  path: string;
}

const created = new Set<string>();

export function uniqueName(prefix: string): string {
  return `${prefix}-${process.pid.toString(36)}${randomBytes(3).toString('hex')}`;
}

export function createNetns(prefix = 'nhit'): Netns {
  const name = uniqueName(prefix);
  execFileSync('ip', ['netns', 'add', name]);
  created.add(name);
  execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  return { name, path: `/var/run/netns/${name}` };
}

/** A namespace made outside createNetns (as a bare `ip netns add` would), deleted by deleteAllNetns too. */
export function recreateNetns(ns: Netns): void {
  execFileSync('ip', ['netns', 'add', ns.name]);
  created.add(ns.name);
}

export function deleteNetns(ns: Netns | string): void {
  const name = typeof ns === 'string' ? ns : ns.name;
  spawnSync('ip', ['netns', 'del', name]);
  created.delete(name);
}

export function deleteAllNetns(): void {
  for (const n of [...created]) deleteNetns(n);
}

/** Runs a command inside a namespace; returns stdout, throws on failure. */
export function inNetns(ns: Netns, cmd: string, args: string[], input?: string): string {
  return execFileSync('ip', ['netns', 'exec', ns.name, cmd, ...args], { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
}

/** Like inNetns, but reports the exit status instead of throwing. */
export function tryInNetns(ns: Netns, cmd: string, args: string[]): { status: number; stdout: string; stderr: string } {
  const r = spawnSync('ip', ['netns', 'exec', ns.name, cmd, ...args], { encoding: 'utf8' });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

export function ping(from: Netns, to: string): boolean {
  return tryInNetns(from, 'ping', ['-c', '1', '-W', '2', to]).status === 0;
}

/** Addresses of an interface inside a namespace, as "addr/prefix". */
export function addressesOf(ns: Netns, ifname: string): string[] {
  const out = JSON.parse(inNetns(ns, 'ip', ['-j', 'addr', 'show', 'dev', ifname])) as { addr_info: { local: string; prefixlen: number; scope: string }[] }[];
  return out.flatMap((l) => l.addr_info.filter((a) => a.scope === 'global').map((a) => `${a.local}/${a.prefixlen}`));
}

/** Links of a namespace by type (e.g. "veth"), as names. */
export function linksOfType(ns: Netns, type: string): string[] {
  const out = JSON.parse(inNetns(ns, 'ip', ['-j', 'link', 'show', 'type', type]) || '[]') as { ifname: string }[];
  return out.map((l) => l.ifname);
}

export function mtuOf(ns: Netns, ifname: string): number {
  return (JSON.parse(inNetns(ns, 'ip', ['-j', 'link', 'show', 'dev', ifname])) as { mtu: number }[])[0]!.mtu;
}

/**
 * An "outside" namespace linked to the node: the node is 198.51.100.1/24 on
 * it, the outside host 198.51.100.2/24, and the outside has no route back to
 * any pod subnet - so a pod reaches it only through masquerade.
 */
export function createOutside(node: Netns): Netns {
  const out = createNetns('nhio');
  const a = `o${randomBytes(3).toString('hex')}`;
  execFileSync('ip', ['-n', node.name, 'link', 'add', a, 'type', 'veth', 'peer', 'name', 'up0', 'netns', out.name]);
  execFileSync('ip', ['-n', node.name, 'addr', 'add', '198.51.100.1/24', 'dev', a]);
  execFileSync('ip', ['-n', node.name, 'link', 'set', a, 'up']);
  execFileSync('ip', ['-n', out.name, 'addr', 'add', '198.51.100.2/24', 'dev', 'up0']);
  execFileSync('ip', ['-n', out.name, 'link', 'set', 'up0', 'up']);
  return out;
}

/** Pings until an answer comes or `ms` passed (for addresses still in IPv6 DAD). */
export function pingWithin(from: Netns, to: string, ms: number): boolean {
  const end = Date.now() + ms;
  for (;;) {
    if (ping(from, to)) return true;
    if (Date.now() > end) return false;
  }
}
