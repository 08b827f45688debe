// `nhi-cni ipam …`: the reservations of a host-local data directory, the ones
// whose owner is gone (check), and their release from a check's report.
import { Command, InvalidArgumentError } from 'commander';
import { closeSync, fstatSync, lstatSync, openSync, readdirSync, readSync, constants } from 'node:fs';
import { join, resolve } from 'node:path';
import { validateNetworkName } from '../cni/config.js';
import { validateContainerId, validateIfname } from '../cni/env.js';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { DEFAULT_DATA_DIR } from '../chain/ipam/config.js';
import { DiskStore } from '../chain/ipam/store.js';
import { RECLAIM_GRACE_MS, releaseLeaked, scan, type Finding, type ReleaseTarget } from '../chain/reclaim.js';
import { AttachmentStore } from '../chain/state.js';
import { compare, formatIp, parseIp } from '../net/ip.js';
import { applyNft, NftTransaction } from '../sys/nft.js';
import { bootId } from '../sys/sysfs.js';
import { askAgent } from './agent-socket.js';
import { EXIT, formatOf, outputOption, printDocument, printRows, type Column } from './output.js';

/** Bad input: exit 2. */
class UsageError extends Error {}

/** Runs an action: a thrown error goes to stderr with exit status 2 (usage or error), never a stack trace. */
function guarded<A extends unknown[]>(fn: (...a: A) => void | Promise<void>) {
  return async (...a: A) => {
    try {
      await fn(...a);
    } catch (e) {
      process.stderr.write(`nhi-cni ipam: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = EXIT.usage;
    }
  };
}

function networksOf(dataDir: string, network: string | undefined): string[] {
  if (network !== undefined) {
    const why = validateNetworkName(network);
    if (why) throw new UsageError(`invalid network name ${JSON.stringify(network)}: ${why}`);
    return [network];
  }
  try {
    return readdirSync(dataDir, { withFileTypes: true }).filter((d) => d.isDirectory() && !validateNetworkName(d.name)).map((d) => d.name).sort();
  } catch {
    return [];
  }
}

// ---- ipam ls ----

interface LsRow {
  network: string;
  ip: string;
  containerId: string;
  ifname: string;
  netns?: string;
  hostVeth?: string;
  created?: string;
}

function lsCommand(): Command {
  return new Command('ls')
    .description('list reserved addresses and the attachment (container id, interface) holding each')
    .argument('[network]', 'network name; all networks when omitted')
    .option('--data-dir <dir>', 'IPAM data directory', DEFAULT_DATA_DIR)
    .option('--state-dir <dir>', 'nhi-cni state directory (-o wide: the attachment record of each)', DEFAULT_STATE_DIR)
    .addOption(outputOption())
    .option('--json', 'same as -o json (one JSON object per line)')
    .action(guarded((network: string | undefined, opts: { dataDir: string; stateDir: string; output: string; json?: boolean }) => {
      const format = formatOf(opts);
      const rows: LsRow[] = [];
      for (const n of networksOf(opts.dataDir, network)) {
        const records = format === 'table' ? [] : new AttachmentStore(opts.stateDir, n).list();
        const list = new DiskStore(opts.dataDir, n).list().sort((a, b) => compare(a.ip, b.ip));
        for (const r of list) {
          const row: LsRow = { network: n, ip: formatIp(r.ip), containerId: r.owner?.containerId ?? '?', ifname: r.owner?.ifname ?? '' };
          const rec = records.find((x) => x.containerId === r.owner?.containerId && x.ifname === r.owner?.ifname);
          if (rec) Object.assign(row, { netns: rec.netns, hostVeth: rec.hostVeth, created: rec.created });
          rows.push(row);
        }
      }
      const cols: Column<LsRow>[] = [
        { header: 'NETWORK', value: (r) => r.network },
        { header: 'ADDRESS', value: (r) => r.ip },
        { header: 'IFNAME', value: (r) => r.ifname },
        { header: 'HOSTVETH', value: (r) => r.hostVeth ?? '-', wide: true },
        { header: 'CREATED', value: (r) => r.created ?? '-', wide: true },
        { header: 'NETNS', value: (r) => r.netns ?? '-', wide: true },
        { header: 'CONTAINER', value: (r) => r.containerId },
      ];
      return printRows(rows, format, cols);
    }));
}

// ---- ipam check ----

export interface CheckReport {
  kind: 'nhi-cni/ipam-check';
  version: 1;
  time: string;
  bootId: string | null;
  dataDir: string;
  stateDir: string;
  graceSeconds: number;
  findings: Finding[];
}

/** A finding, and (with the agent) whether a pod of this node in the Kubernetes API holds its address. */
type CheckedFinding = Finding & { inApi?: boolean };

const findingColumns: Column<CheckedFinding & { action?: string }>[] = [
  { header: 'NETWORK', value: (r) => r.network },
  { header: 'ADDRESS', value: (r) => r.ip },
  { header: 'STATE', value: (r) => r.state },
  { header: 'REASON', value: (r) => r.reason },
  { header: 'IFNAME', value: (r) => r.ifname || '-' },
  { header: 'HOSTVETH', value: (r) => r.hostVeth ?? '-', wide: true },
  { header: 'NETNS', value: (r) => r.netns ?? '-', wide: true },
  { header: 'CREATED', value: (r) => r.created ?? '-', wide: true },
  { header: 'CONTAINER', value: (r) => r.containerId || '-' },
  { header: 'DETAIL', value: (r) => r.detail, wide: true },
];

function seconds(v: string): number {
  const n = Number(v);
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(n)) throw new InvalidArgumentError(`--grace must be a whole number of seconds, not ${JSON.stringify(v)}`);
  return n;
}

/**
 * The addresses of this node's pods as the Kubernetes API has them, from the
 * agent on `<stateDir>/agent.sock` (its last applied view); undefined when no
 * agent runs there (file mode) or it does not answer within 2 s.
 */
async function apiPodAddresses(stateDir: string): Promise<Set<string> | undefined> {
  const socketPath = join(stateDir, 'agent.sock');
  try {
    if (!lstatSync(socketPath).isSocket()) return undefined;
  } catch {
    return undefined;
  }
  let view: { pods?: { local?: boolean; ips?: unknown[] }[] } | null;
  try {
    view = (await askAgent(socketPath, '/view', 2000)) as typeof view;
  } catch {
    return undefined;
  }
  if (!view || !Array.isArray(view.pods)) return undefined;
  const out = new Set<string>();
  for (const p of view.pods) {
    if (p.local !== true || !Array.isArray(p.ips)) continue;
    for (const ip of p.ips) {
      const x = typeof ip === 'string' ? parseIp(ip) : undefined;
      if (x) out.add(formatIp(x));
    }
  }
  return out;
}

function checkCommand(): Command {
  return new Command('check')
    .description('list reservations whose owner is gone (leaked), and those that cannot be judged')
    .argument('[network]', 'network name; all networks when omitted')
    .option('--data-dir <dir>', 'IPAM data directory', DEFAULT_DATA_DIR)
    .option('--state-dir <dir>', 'nhi-cni state directory (attachment records)', DEFAULT_STATE_DIR)
    .option('--grace <seconds>', 'a record younger than this is not judged by a missing namespace', seconds, RECLAIM_GRACE_MS / 1000)
    .option('--all', 'also list the live reservations')
    .addOption(outputOption())
    .addHelpText('after', `
Run it as root on the node: in its network namespace (host veths are looked
up there) with its /run and /proc (pod namespaces are looked up by path).
A reservation is LEAKED when its attachment record proves its owner gone:
  previous-boot  the record was written in an earlier boot (boot id)
  netns-gone     its host veth and its namespace are gone, and the record is
                 older than --grace
UNKNOWN: nothing proves it either way (no nhi-cni record: a delegating main
plugin or the reference host-local, an ADD killed before its record, a lost
state dir); never released by nhi-cni — a DEL or GC from the runtime does.
LIVE (with --all): host veth or namespace present, recent, or in flight.
With the agent (<state-dir>/agent.sock), IN-API says whether a pod of this node
in the Kubernetes API holds the address; a live reservation that no such pod
holds is listed too (a DEL that never came, or an ADD under way): a lead, not
a proof, so \`ipam release\` never frees it.
-o json and -o yaml print the whole report, the input of
\`nhi-cni ipam release --from-report FILE\`.
Exit status: 0 when the check ran (with or without findings), 2 on bad input
or an unreadable directory.`)
    .action(guarded(async (network: string | undefined, opts: { dataDir: string; stateDir: string; grace: number; all?: boolean; output: string }) => {
      const format = formatOf(opts);
      const dataDir = resolve(opts.dataDir);
      const stateDir = resolve(opts.stateDir);
      const ctx = { bootId: bootId(), now: Date.now(), graceMs: opts.grace * 1000 };
      const findings: CheckedFinding[] = [];
      const inApi = await apiPodAddresses(stateDir);
      for (const n of networksOf(dataDir, network)) {
        const all: CheckedFinding[] = (await scan({ dataDir, stateDir, network: n, ctx, probeLocks: true }))
          .map((f) => (inApi ? { ...f, inApi: inApi.has(f.ip) } : f));
        findings.push(...all.filter((f) => opts.all || f.state !== 'live' || f.inApi === false));
      }
      const report: CheckReport = {
        kind: 'nhi-cni/ipam-check', version: 1, time: new Date(ctx.now).toISOString(), bootId: ctx.bootId ?? null,
        dataDir, stateDir, graceSeconds: opts.grace, findings,
      };
      if (format === 'json' || format === 'yaml') return printDocument(report, format);
      if (findings.length === 0) {
        process.stdout.write(`no leaked reservations in ${dataDir}${network ? `/${network}` : ''}\n`);
        return;
      }
      // IN-API only when the agent answered (cluster mode).
      const columns = findings.some((f) => f.inApi !== undefined)
        ? [...findingColumns.slice(0, 4), { header: 'IN-API', value: (r: CheckedFinding) => (r.inApi === undefined ? '-' : r.inApi ? 'yes' : 'no') }, ...findingColumns.slice(4)]
        : findingColumns;
      return printRows(findings, format, columns);
    }));
}

// ---- ipam release ----

const MAX_REPORT_BYTES = 16 << 20;

function readReport(file: string): string {
  // Not through a link an unprivileged user planted, and bounded.
  let fd: number;
  try {
    fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (e) {
    throw new UsageError(`cannot read report ${file}: ${(e as Error).message}`);
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new UsageError(`report ${file} is not a regular file`);
    if (st.size > MAX_REPORT_BYTES) throw new UsageError(`report ${file} is larger than ${MAX_REPORT_BYTES} bytes`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** The leaked entries of a check report, every field validated; anything else in it is refused, not skipped. */
export function parseReport(text: string, dataDir: string, stateDir: string): { network: string; target: ReleaseTarget }[] {
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new UsageError(`the report is not JSON (make it with nhi-cni ipam check -o json): ${(e as Error).message}`);
  }
  const r = doc as Partial<CheckReport> | null;
  if (!r || typeof r !== 'object' || r.kind !== 'nhi-cni/ipam-check' || r.version !== 1 || !Array.isArray(r.findings)) {
    throw new UsageError('not a report of nhi-cni ipam check -o json (kind nhi-cni/ipam-check, version 1, findings)');
  }
  // The directories are the command line's, never the file's: a report must not choose where root deletes.
  if (r.dataDir !== dataDir) throw new UsageError(`the report is of data dir ${JSON.stringify(r.dataDir)}, not ${dataDir}: pass --data-dir ${JSON.stringify(r.dataDir)} if that is meant`);
  if (r.stateDir !== stateDir) throw new UsageError(`the report is of state dir ${JSON.stringify(r.stateDir)}, not ${stateDir}: pass --state-dir ${JSON.stringify(r.stateDir)} if that is meant`);
  const out: { network: string; target: ReleaseTarget }[] = [];
  r.findings.forEach((f: unknown, i) => {
    const bad = (why: string) => new UsageError(`report findings[${i}]: ${why}`);
    const x = f as Record<string, unknown> | null;
    if (!x || typeof x !== 'object') throw bad('not an object');
    if (x.state !== 'leaked') return;
    const { network, ip, containerId, ifname } = x;
    if (typeof network !== 'string' || validateNetworkName(network)) throw bad(`invalid network ${JSON.stringify(network)}`);
    const parsed = typeof ip === 'string' ? parseIp(ip) : undefined;
    if (!parsed || formatIp(parsed) !== ip) throw bad(`invalid address ${JSON.stringify(ip)}`);
    if (typeof containerId !== 'string' || validateContainerId(containerId)) throw bad(`invalid containerId ${JSON.stringify(containerId)}`);
    if (typeof ifname !== 'string' || validateIfname(ifname)) throw bad(`invalid ifname ${JSON.stringify(ifname)}`);
    out.push({ network, target: { ip, containerId, ifname } });
  });
  return out;
}

function releaseCommand(): Command {
  return new Command('release')
    .description('release the reservations a check report lists as leaked, those still leaked when judged again under the locks')
    .requiredOption('--from-report <file>', 'the output of nhi-cni ipam check -o json')
    .option('--data-dir <dir>', 'IPAM data directory (must be the report\'s)', DEFAULT_DATA_DIR)
    .option('--state-dir <dir>', 'nhi-cni state directory (must be the report\'s)', DEFAULT_STATE_DIR)
    .option('--grace <seconds>', 'as for check', seconds, RECLAIM_GRACE_MS / 1000)
    .addOption(outputOption())
    .addHelpText('after', `
Each leaked entry is judged again holding its attachment's lock (an ADD, DEL
or CHECK in flight keeps it), and only addresses still reserved to that
container and interface are removed, under the IPAM lock. An attachment left
with no address loses its record (and, in this boot, its port guard).
Prints one row per entry: released, or kept with the reason.
Exit status: 0 all released (or nothing to do), 1 some kept, 2 bad input.`)
    .action(guarded(async (opts: { fromReport: string; dataDir: string; stateDir: string; grace: number; output: string }) => {
      const format = formatOf(opts);
      const dataDir = resolve(opts.dataDir);
      const stateDir = resolve(opts.stateDir);
      const entries = parseReport(readReport(opts.fromReport), dataDir, stateDir);
      const ctx = { bootId: bootId(), now: Date.now(), graceMs: opts.grace * 1000 };
      const rows: (Finding & { action: string })[] = [];
      const unguard = new NftTransaction();
      for (const network of [...new Set(entries.map((e) => e.network))].sort()) {
        const o = await releaseLeaked({ dataDir, stateDir, network, ctx }, entries.filter((e) => e.network === network).map((e) => e.target));
        rows.push(...o.released.map((f) => ({ ...f, action: 'released' })), ...o.kept.map((f) => ({ ...f, action: 'kept' })));
        unguard.push(...o.unguard);
      }
      if (!unguard.empty) {
        const r = await applyNft(unguard);
        if (r.exitCode !== 0) process.stderr.write(`nhi-cni ipam: removing the released pods' port guards (table bridge nhi_cni) failed: ${r.stderr.trim()}\n`);
      }
      if (rows.length === 0 && format !== 'json' && format !== 'yaml') process.stdout.write('nothing leaked in the report\n');
      else await printRows(rows, format, [{ header: 'ACTION', value: (r) => r.action }, ...findingColumns]);
      if (rows.some((r) => r.action === 'kept')) process.exitCode = EXIT.none;
    }));
}

export function ipamCommand(): Command {
  const ipam = new Command('ipam').description('host-local IPAM reservations (nhi-ipam and the reference host-local share them): list, find leaks, release them');
  ipam.addCommand(lsCommand());
  ipam.addCommand(checkCommand());
  ipam.addCommand(releaseCommand());
  return ipam;
}
