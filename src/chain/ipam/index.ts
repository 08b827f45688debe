// The host-local IPAM module: add, del, check, gc and status of the addresses of
// one attachment (containerID, ifname) in one network.
import { readFileSync, constants, openSync, closeSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import type { Attachment } from '../../cni/attachments.js';
import { CniError, Code } from '../../cni/errors.js';
import type { Result } from '../../cni/result.js';
import { equal, formatIp, parseCidr, type Ip } from '../../net/ip.js';
import { candidates, capacity } from './allocator.js';
import { inRange, rangeFor, rangeSetString, type IpamConfig } from './config.js';
import { TMP_PREFIX } from '../../sys/files.js';
import { parseResolvConf } from './resolv.js';
import { DiskStore, ownedBy, type Reservation } from './store.js';

const key = (ip: Ip) => `${ip.family}/${ip.value}`;

function readDns(path: string): Result['dns'] {
  try {
    return parseResolvConf(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new CniError(Code.InvalidConfig, `cannot read ipam.resolvConf ${path}`, (e as Error).message);
  }
}

/**
 * Reserves one address from every range set for the attachment and returns
 * the IPAM result. Nothing is left reserved when it fails. An attachment that
 * already holds addresses (a repeated ADD):
 *   - `reuse` (the nhi-cni chain, which holds the attachment's lock and
 *     cleans up an interrupted ADD first): gets the same ones back;
 *   - otherwise (nhi-ipam as a main plugin's delegate): refused, as the
 *     reference host-local refuses it. A main plugin such as ptp runs IPAM
 *     first and releases it when its own step fails - on a retry, that
 *     release would free the address of the attachment that is still wired.
 */
export function ipamAdd(cfg: IpamConfig, att: Attachment, reuse = true): Result {
  const dns = cfg.resolvConf ? readDns(cfg.resolvConf) : undefined;
  const store = new DiskStore(cfg.dataDir, cfg.network);
  const ips = store.locked(() => {
    const existing = store.list();
    const taken = new Set(existing.map((r) => key(r.ip)));
    const mine = existing.filter((r) => ownedBy(r, att.containerId, att.ifname));
    const requested = [...cfg.requested];
    const created: Reservation[] = [];
    const out: NonNullable<Result['ips']> = [];
    try {
      cfg.ranges.forEach((set, idx) => {
        const reqIdx = requested.findIndex((ip) => rangeFor(set, ip));
        const req = reqIdx >= 0 ? requested.splice(reqIdx, 1)[0] : undefined;
        const held = mine.find((r) => rangeFor(set, r.ip));
        let ip: Ip;
        if (held) {
          if (!reuse) {
            throw new CniError(Code.AddressUnavailable,
              `failed to allocate for range ${idx}: ${formatIp(held.ip)} has been allocated to ${att.containerId}, duplicate allocation is not allowed`,
              `interface ${att.ifname} of the container already holds it; DEL the attachment before adding it again`);
          }
          if (req && !equal(req, held.ip)) {
            throw new CniError(Code.AddressUnavailable,
              `container ${att.containerId} interface ${att.ifname} already holds ${formatIp(held.ip)} in range set ${idx}; it cannot also take the requested ${formatIp(req)}`,
              'DEL the attachment first to change its address');
          }
          ip = held.ip;
        } else if (req) {
          const r = rangeFor(set, req)!;
          if (equal(req, r.gateway)) throw new CniError(Code.AddressUnavailable, `requested ip ${formatIp(req)} is subnet's gateway`);
          if (taken.has(key(req)) || !store.reserve(req, att.containerId, att.ifname, idx)) {
            throw new CniError(Code.AddressUnavailable, `requested IP address ${formatIp(req)} is not available in range set ${rangeSetString(set)}`);
          }
          created.push({ ip: req, file: join(store.dir, formatIp(req)) });
          ip = req;
        } else {
          let got: Ip | undefined;
          for (const c of candidates(set, store.lastReserved(idx))) {
            if (taken.has(key(c.ip))) continue;
            if (store.reserve(c.ip, att.containerId, att.ifname, idx)) {
              got = c.ip;
              break;
            }
          }
          if (!got) {
            throw new CniError(Code.PoolExhausted,
              `failed to allocate for range ${idx}: no IP addresses available in range set: ${rangeSetString(set)}`,
              `network ${cfg.network}: every address of the range set is reserved; release stale reservations with GC or widen the range`);
          }
          created.push({ ip: got, file: join(store.dir, formatIp(got)) });
          ip = got;
        }
        const range = rangeFor(set, ip)!;
        out.push({ address: `${formatIp(ip)}/${range.subnet.prefix}`, gateway: formatIp(range.gateway) });
      });
      if (requested.length > 0) {
        throw new CniError(Code.AddressUnavailable,
          `failed to allocate all requested IPs: ${requested.map(formatIp).join(' ')}`,
          'a requested address lies in none of the range sets');
      }
    } catch (e) {
      for (const r of created) store.release(r);
      throw e;
    }
    return out;
  });
  const result: Result = { ips };
  if (cfg.routes.length) result.routes = cfg.routes;
  if (dns) result.dns = dns;
  return result;
}

/** Releases what the attachment holds; nothing held is success. */
export function ipamDel(cfg: IpamConfig, att: Attachment): Ip[] {
  const store = new DiskStore(cfg.dataDir, cfg.network);
  return store.locked(() => {
    const all = store.list();
    // Prefer the exact (id, ifname) files; fall back to legacy id-only files,
    // as the reference does, so that both layouts are released.
    const exact = all.filter((r) => r.owner?.containerId === att.containerId.trim() && r.owner.ifname === att.ifname);
    const mine = exact.length ? exact : all.filter((r) => ownedBy(r, att.containerId, att.ifname));
    for (const r of mine) store.release(r);
    return mine.map((r) => r.ip);
  });
}

/**
 * The attachment must hold an address in every range set, and every address
 * of prevResult inside our ranges must be reserved to it.
 */
export function ipamCheck(cfg: IpamConfig, att: Attachment, prev?: Result): void {
  const store = new DiskStore(cfg.dataDir, cfg.network);
  const mine = store.list().filter((r) => ownedBy(r, att.containerId, att.ifname));
  const who = `container ${att.containerId} interface ${att.ifname}`;
  if (mine.length === 0) {
    throw new CniError(Code.CheckFailed, `no address is reserved for ${who} in network ${cfg.network}`, `looked in ${store.dir}`);
  }
  cfg.ranges.forEach((set, idx) => {
    if (!mine.some((r) => rangeFor(set, r.ip))) {
      throw new CniError(Code.CheckFailed, `${who} holds no address in range set ${idx} (${rangeSetString(set)})`);
    }
  });
  for (const ipc of prev?.ips ?? []) {
    const ip = parseCidr(ipc.address)!.ip;
    if (!cfg.ranges.some((s) => s.some((r) => inRange(r, ip)))) continue;
    if (!mine.some((r) => equal(r.ip, ip))) {
      throw new CniError(Code.CheckFailed, `${formatIp(ip)} of prevResult is not reserved for ${who}`);
    }
  }
}

/**
 * Releases every reservation that no valid attachment owns. `valid` undefined
 * (the runtime sent no list) releases nothing; an empty list releases all.
 */
export function ipamGc(cfg: IpamConfig, valid: Attachment[] | undefined): Ip[] {
  if (valid === undefined) return [];
  const store = new DiskStore(cfg.dataDir, cfg.network);
  const exact = new Set(valid.map((a) => `${a.containerId}\0${a.ifname}`));
  const ids = new Set(valid.map((a) => a.containerId));
  return store.locked(() => {
    store.removeStaleTemporaries();
    const stale = store.list().filter((r) => {
      const o = r.owner;
      if (!o) return true;
      return o.ifname === undefined ? !ids.has(o.containerId) : !exact.has(`${o.containerId}\0${o.ifname}`);
    });
    for (const r of stale) store.release(r);
    return stale.map((r) => r.ip);
  });
}

/** Code 50 when the data directory cannot be written or a range set is full. */
export function ipamStatus(cfg: IpamConfig): void {
  const store = new DiskStore(cfg.dataDir, cfg.network);
  try {
    store.ensureDir();
    const probe = join(store.dir, `${TMP_PREFIX}status.${process.pid}`);
    closeSync(openSync(probe, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600));
    unlinkSync(probe);
  } catch (e) {
    throw new CniError(Code.NotAvailable, `IPAM data directory ${store.dir} is not writable`, (e as Error).message);
  }
  const held = store.list();
  cfg.ranges.forEach((set, idx) => {
    const used = BigInt(held.filter((r) => rangeFor(set, r.ip) && !set.some((x) => equal(x.gateway, r.ip))).length);
    if (capacity(set) - used <= 0n) {
      throw new CniError(Code.NotAvailable, `no free address in range set ${idx} (${rangeSetString(set)}) of network ${cfg.network}`,
        'release stale reservations with GC or widen the range');
    }
  });
}
