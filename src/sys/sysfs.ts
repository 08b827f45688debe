// Kernel state readable and writable without a process: /sys/class/net for
// links of the plugin's own network namespace, /proc/sys for its sysctls.
// (Both reflect the namespace the plugin runs in: the node's.)
import { readFileSync, readlinkSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { basename, join } from 'node:path';
import { createExclusive } from './files.js';
import { safeRoot, safeSubdir } from './safe-path.js';

const NET = '/sys/class/net';

export function linkExists(name: string): boolean {
  return existsSync(`${NET}/${name}`);
}

export function isBridge(name: string): boolean {
  return existsSync(`${NET}/${name}/bridge`);
}

export function linkMac(name: string): string | undefined {
  try {
    return readFileSync(`${NET}/${name}/address`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

export function linkIndex(name: string): number | undefined {
  try {
    return Number(readFileSync(`${NET}/${name}/ifindex`, 'utf8'));
  } catch {
    return undefined;
  }
}

const IFF_UP = 0x1;

/**
 * Brings a link of this namespace up by writing its flags to sysfs (the
 * kernel's dev_change_flags, what `ip link set up` does, without a process).
 * Throws when the link is gone or the write is refused.
 */
export function setLinkUp(name: string): void {
  setLinkFlag(name, true);
}

/** Takes a link of this namespace down the same way; throws when it cannot. */
export function setLinkDown(name: string): void {
  setLinkFlag(name, false);
}

/** A kernel interface name (IFNAMSIZ, no "/"), so that a name from a record can only name a link's own flags file. */
const LINK_NAME = /^(?!\.{1,2}$)[^/\s:]{1,15}$/;

function setLinkFlag(name: string, up: boolean): void {
  if (!LINK_NAME.test(name)) throw new Error(`${JSON.stringify(name)} is not an interface name`);
  const file = `${NET}/${name}/flags`;
  const flags = Number.parseInt(readFileSync(file, 'utf8').trim(), 16);
  if (Number.isNaN(flags)) throw new Error(`${file} does not hold flags`);
  const want = up ? flags | IFF_UP : flags & ~IFF_UP;
  if (want !== flags) writeFileSync(file, `0x${want.toString(16)}`);
}

/** The bridge a link is enslaved to, if any. */
export function linkMaster(name: string): string | undefined {
  try {
    return basename(readlinkSync(`${NET}/${name}/master`));
  } catch {
    return undefined;
  }
}

export function readSysctl(path: string): string | undefined {
  try {
    return readFileSync(`/proc/sys/${path}`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** Writes a sysctl when it differs; false when the key does not exist. */
export function ensureSysctl(path: string, value: string): boolean {
  const cur = readSysctl(path);
  if (cur === undefined) return false;
  if (cur !== value) {
    if (RECORDED_SYSCTLS.includes(path)) recordSysctlOrigin(path, cur, value);
    writeFileSync(`/proc/sys/${path}`, value);
  }
  return true;
}

/**
 * Node-wide sysctls nhi-cni may change: the value each had before the first
 * change is kept (`uninstall --purge` puts it back). Per-interface ones go
 * with their interface.
 */
export const RECORDED_SYSCTLS = ['net/ipv4/ip_forward', 'net/ipv6/conf/all/forwarding', 'net/bridge/bridge-nf-call-iptables', 'net/bridge/bridge-nf-call-ip6tables'];

/** Where the originals of this network namespace are kept: under the run dir, gone at reboot like the values themselves. */
export function sysctlOriginDir(runDir = process.env.NHI_CNI_RUN_DIR || '/run/nhi-cni'): string {
  return join(runDir, ownNetnsId(), 'sysctl');
}

/** The first writer wins (O_EXCL): that is the value before nhi-cni. Never fails the caller. */
function recordSysctlOrigin(path: string, was: string, set: string): void {
  try {
    const runDir = process.env.NHI_CNI_RUN_DIR || '/run/nhi-cni';
    safeRoot(runDir, 'run dir');
    const dir = safeSubdir(runDir, [ownNetnsId(), 'sysctl'])!;
    createExclusive(join(dir, path.replaceAll('/', '.')), `${JSON.stringify({ path, was, set })}\n`);
  } catch {
    // Not recorded: uninstall will leave this one as it is.
  }
}

/** Identifies the plugin's network namespace (its inode), for node-local caches. */
export function ownNetnsId(): string {
  return String(statSync('/proc/self/ns/net').ino);
}

export function netnsId(path: string): string | undefined {
  try {
    return String(statSync(path).ino);
  } catch {
    return undefined;
  }
}

let bootIdCache: string | undefined;

/**
 * This boot's id (/proc/sys/kernel/random/boot_id, a UUID the kernel draws at
 * boot): recorded with each attachment, so a record from an earlier boot is
 * proof that its veth, namespace and kernel state are gone. Read once per
 * process (one small read, no process); undefined when unreadable.
 */
export function bootId(): string | undefined {
  if (bootIdCache === undefined) {
    try {
      const id = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
      if (/^[0-9a-f-]{36}$/.test(id)) bootIdCache = id;
    } catch {
      // no /proc: nothing recorded, and nothing judged by boot
    }
  }
  return bootIdCache;
}
