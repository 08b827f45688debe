// The identity ledger: who held which address when. One JSON object per line,
// appended on every ADD and DEL, never rewritten, so an address seen in a log
// can be traced back to the workload that held it at that moment
// (`nhi-cni who <ip> --at <time>`).
import { closeSync, lstatSync, writeSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';
import { CniError, Code } from '../cni/errors.js';
import { openNoFollow, readNoFollow, safeRoot } from '../sys/safe-path.js';
import { parseCidr, parseIp, equal } from '../net/ip.js';

export interface LedgerEntry {
  time: string;
  event: 'ADD' | 'DEL';
  network: string;
  containerId: string;
  ifname: string;
  netns: string;
  /** Addresses with prefix. */
  ips: string[];
  /** Kubernetes pod, from CNI_ARGS K8S_POD_NAMESPACE/K8S_POD_NAME, when given. */
  pod?: string;
  identity?: { namespace: string; name: string; labels: Record<string, string>; serviceAccount?: string };
}

/**
 * Appends one line with a single write on an O_APPEND descriptor: concurrent
 * plugins never interleave within a line, and nothing is ever rewritten.
 */
export function appendLedger(path: string, e: LedgerEntry): void {
  safeRoot(dirname(path), 'stateDir');
  const fd = openNoFollow(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o600);
  try {
    writeSync(fd, `${JSON.stringify(e)}\n`);
  } finally {
    closeSync(fd);
  }
}

export const ledgerPath = (stateDir: string) => join(stateDir, 'ledger.jsonl');

/**
 * Refuses a ledger that is a symbolic link before an ADD does anything: the
 * append at its end would fail (O_NOFOLLOW) after the pod is wired, and an
 * ADD whose ledger line cannot be written is only logged.
 */
export function checkLedger(stateDir: string): void {
  try {
    if (!lstatSync(ledgerPath(stateDir)).isSymbolicLink()) return;
  } catch {
    return; // missing: the first append creates it
  }
  throw new CniError(Code.InvalidConfig, `${ledgerPath(stateDir)} is a symbolic link: nhi-cni does not follow links inside its directories`, 'remove it');
}

export function readLedger(path: string): LedgerEntry[] {
  let text: string;
  try {
    text = readNoFollow(path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw e;
  }
  const out: LedgerEntry[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      out.push(JSON.parse(line) as LedgerEntry);
    } catch {
      // a line torn by a crash mid-write: skip it, keep the rest
    }
  }
  return out;
}

/**
 * Who held `ip` at time `at` (default: now): the ADD events of that address
 * at or before `at` whose attachment had no DEL in between.
 */
export function whoHeld(entries: LedgerEntry[], ipText: string, at = new Date()): LedgerEntry[] {
  const ip = parseIp(ipText);
  if (!ip) throw new Error(`${JSON.stringify(ipText)} is not an IP address`);
  const holds = (e: LedgerEntry) => e.ips.some((a) => equal(parseCidr(a)?.ip, ip));
  const open = new Map<string, LedgerEntry>();
  for (const e of [...entries].sort((a, b) => a.time.localeCompare(b.time))) {
    if (Date.parse(e.time) > at.getTime()) break;
    const key = `${e.network}\0${e.containerId}\0${e.ifname}`;
    if (e.event === 'ADD' && holds(e)) open.set(key, e);
    else if (e.event === 'DEL') open.delete(key);
  }
  return [...open.values()];
}
