// `nhi-cni uninstall`: takes away what `install` wrote, conflist first (the
// runtime stops sending new pods to a network whose conflist is gone), then
// the plugin links and the executable. With --purge also what nhi-cni made
// while it ran: its nftables tables, the bridge once no pod uses it, the
// agent's overlay links, the state and run directories and the network's
// IPAM reservations, and the node-wide sysctls nhi-cni changed put back to
// the value they had (src/sys/sysfs.ts records it at the change) when nobody
// changed them since. Refuses while pods are attached (they would lose their
// DEL), listing them, unless --force.
import { Command } from 'commander';
import { lstatSync, readdirSync, readFileSync, readlinkSync, realpathSync, rmdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateNetworkName } from '../cni/config.js';
import { absolutePathProblem } from '../cni/paths.js';
import { DEFAULT_BRIDGE, DEFAULT_RUN_DIR, DEFAULT_STATE_DIR } from '../chain/config.js';
import { DEFAULT_DATA_DIR } from '../chain/ipam/config.js';
import { judge } from '../chain/reclaim.js';
import { AttachmentStore } from '../chain/state.js';
import { run } from '../sys/exec.js';
import { isBridge, linkExists, bootId, readSysctl, RECORDED_SYSCTLS, sysctlOriginDir } from '../sys/sysfs.js';
import { readNoFollow } from '../sys/safe-path.js';
import { hasDivertRule, L7_DIVERT, L7_TABLE } from '../l7/redirect.js';
import { EXIT } from './output.js';
import { DEFAULT_BIN_DIR, DEFAULT_CONF_DIR, DEFAULT_CONFLIST_NAME } from './install.js';

const BINARY_NAME = 'nhi-cni';
const LINKS = ['nhi-ipam', 'nhi-policy'];
const OUR_TYPES = ['nhi-cni', 'nhi-ipam', 'nhi-policy'];
/** Our nftables tables: masquerade and the routed-port guard (inet nhi_cni), the bridge port guard, the policy, the agent's L7 redirect. */
export const OUR_TABLES: [string, string][] = [['inet', 'nhi_cni'], ['bridge', 'nhi_cni'], ['inet', 'nhi_policy'], ['inet', L7_TABLE]];
/** Links the node agent makes (src/agent/network/desired.ts). */
const AGENT_LINKS = ['nhi-vxlan', 'nhi-wg'];
/** Never removed recursively, whatever a conflist says. */
const SYSTEM_DIRS = new Set(['/', '/bin', '/boot', '/dev', '/etc', '/home', '/lib', '/opt', '/proc', '/root', '/run', '/sbin', '/sys', '/tmp', '/usr', '/var', '/var/lib', '/var/run', '/var/tmp', '/var/lib/cni', '/var/lib/cni/networks', '/etc/cni', '/etc/cni/net.d', '/opt/cni', '/opt/cni/bin']);

interface Options {
  binDir: string;
  confDir: string;
  name: string;
  stateDir?: string;
  dataDir?: string;
  bridge?: string;
  purge?: boolean;
  force?: boolean;
}

class Usage extends Error {}

/** What the conflist says about where nhi-cni kept things (flags win). */
interface Layout {
  network?: string;
  stateDirs: string[];
  dataDir: string;
  bridge: string;
  conflistOurs: boolean;
}

function checkAbs(flag: string, p: string): string {
  const why = absolutePathProblem(p);
  if (why) throw new Usage(`${flag} ${JSON.stringify(p)} ${why}`);
  return p.replace(/\/+$/, '') || '/';
}

function layoutOf(conflistPath: string, o: Options): Layout {
  const out: Layout = { stateDirs: [], dataDir: o.dataDir ?? DEFAULT_DATA_DIR, bridge: o.bridge ?? DEFAULT_BRIDGE, conflistOurs: false };
  let conf: { name?: unknown; plugins?: unknown } | undefined;
  try {
    conf = JSON.parse(readFileSync(conflistPath, 'utf8')) as typeof conf;
  } catch {
    // no conflist (or not JSON): the flags and defaults
  }
  const plugins = Array.isArray(conf?.plugins) ? (conf!.plugins as Record<string, any>[]) : [];
  out.conflistOurs = plugins.some((p) => OUR_TYPES.includes(p?.type) || OUR_TYPES.includes(p?.ipam?.type));
  if (typeof conf?.name === 'string' && !validateNetworkName(conf.name)) out.network = conf.name;
  for (const p of plugins) {
    if (!OUR_TYPES.includes(p?.type) && !OUR_TYPES.includes(p?.ipam?.type)) continue;
    if (typeof p.stateDir === 'string' && !absolutePathProblem(p.stateDir)) out.stateDirs.push(p.stateDir);
    if (o.dataDir === undefined && typeof p.ipam?.dataDir === 'string' && !absolutePathProblem(p.ipam.dataDir)) out.dataDir = p.ipam.dataDir;
    if (o.bridge === undefined && p.type === 'nhi-cni' && typeof p.bridge === 'string' && /^[A-Za-z0-9_.-]{1,15}$/.test(p.bridge)) out.bridge = p.bridge;
  }
  if (o.stateDir !== undefined) out.stateDirs = [o.stateDir];
  if (out.stateDirs.length === 0) out.stateDirs = [DEFAULT_STATE_DIR];
  out.stateDirs = [...new Set(out.stateDirs.map((d) => d.replace(/\/+$/, '')))];
  return out;
}

function dirNames(dir: string): string[] {
  try {
    return readdirSync(dir, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name);
  } catch {
    return [];
  }
}

/** Pods still attached: records whose veth or namespace is there, and any port on our bridge. */
function attachedPods(l: Layout): string[] {
  const ctx = { bootId: bootId(), now: Date.now(), graceMs: 0 };
  const out: string[] = [];
  for (const stateDir of l.stateDirs) {
    for (const net of dirNames(stateDir).filter((n) => !validateNetworkName(n))) {
      for (const rec of new AttachmentStore(stateDir, net).list()) {
        const v = judge(rec, ctx);
        // Record fields are printed for people: no control character reaches the terminal.
        if (v.state !== 'leaked') out.push(`${net} container ${rec.containerId} ${rec.ifname} (host veth ${rec.hostVeth}, ${rec.netns}): ${v.detail}`.replace(/[\u0000-\u001f\u007f]/g, '?'));
      }
    }
  }
  const recorded = new Set(out.map((s) => /host veth (\S+),/.exec(s)?.[1]));
  for (const port of bridgePorts(l.bridge)) if (!recorded.has(port)) out.push(`port ${port} on bridge ${l.bridge} (no nhi-cni record)`);
  return out;
}

function bridgePorts(bridge: string): string[] {
  try {
    return readdirSync(`/sys/class/net/${bridge}/brif`);
  } catch {
    return [];
  }
}

function removeFile(path: string, say: (s: string) => void, expect: 'file' | 'link'): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return; // not there
  }
  if (expect === 'link' ? !st.isSymbolicLink() || readlinkSync(path) !== BINARY_NAME : !st.isFile()) {
    say(`kept ${path}: not what install writes (${expect === 'link' ? `a link to ${BINARY_NAME}` : 'a regular file'})`);
    return;
  }
  unlinkSync(path);
  say(`removed ${path}`);
}

function removeTree(path: string, what: string, say: (s: string) => void): void {
  let st;
  try {
    st = lstatSync(path);
  } catch {
    return;
  }
  if (SYSTEM_DIRS.has(path) || (st.isSymbolicLink() && SYSTEM_DIRS.has(realpathSync(path)))) {
    say(`kept ${path}: a system directory is never removed; remove what nhi-cni left in it by hand`);
    return;
  }
  // rmSync removes a link itself, never what it points to.
  if (st.isSymbolicLink() || !st.isDirectory()) {
    rmSync(path, { force: true });
    say(`removed ${what} ${path}${st.isSymbolicLink() ? ' (a link; the directory it named is left)' : ''}`);
    return;
  }
  for (const n of readdirSync(path)) rmSync(join(path, n), { recursive: true, force: true });
  say(removeEmptyDir(path) ? `removed ${what} ${path}` : `emptied ${what} ${path} (a mount point stays)`);
}

/** rmdir; false when the directory is a mount point (a DaemonSet's hostPath), which stays, empty. */
function removeEmptyDir(path: string): boolean {
  try {
    rmdirSync(path);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'EBUSY' || code === 'EPERM' || code === 'EACCES') return false;
    throw e;
  }
}

/** What nhi-cni writes at the top of a state directory (the chain, the policy engine, the ledger, the agent). */
const STATE_FILES = [/^ledger\.jsonl$/, /^policy[-.]/, /^agent\.sock$/, /^wireguard\.key$/, /^\.nhi-tmp-/];
const NETWORK_SUBDIRS = new Set(['attachments', 'locks']);

/**
 * The state directory, entry by entry: only what nhi-cni writes there goes,
 * so a stateDir set to a directory shared with something else never loses
 * that something's files; the directory itself goes once empty.
 */
function purgeStateDir(dir: string, say: (s: string) => void): void {
  let st;
  try {
    st = lstatSync(dir);
  } catch {
    return;
  }
  if (SYSTEM_DIRS.has(dir) || (st.isSymbolicLink() && SYSTEM_DIRS.has(realpathSync(dir)))) {
    say(`kept ${dir}: a system directory is never removed`);
    return;
  }
  const foreign: string[] = [];
  let entries: import('node:fs').Dirent[] = [];
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    // not a directory we can read: left alone
  }
  for (const e of entries) {
    const path = join(dir, e.name);
    const ours = e.isDirectory()
      ? !validateNetworkName(e.name) && readdirSync(path).every((n) => NETWORK_SUBDIRS.has(n))
      : STATE_FILES.some((re) => re.test(e.name));
    if (ours) rmSync(path, { recursive: true, force: true });
    else foreign.push(e.name);
  }
  if (foreign.length) {
    say(`kept state directory ${dir}: it holds what nhi-cni did not write (${foreign.slice(0, 5).join(', ')}${foreign.length > 5 ? ', …' : ''}); nhi-cni's files in it are removed`);
    return;
  }
  if (st.isSymbolicLink()) {
    rmSync(dir, { force: true });
    say(`removed state directory ${dir} (a link; the directory it named is left, empty)`);
  } else {
    say(removeEmptyDir(dir) ? `removed state directory ${dir}` : `emptied state directory ${dir} (a mount point stays)`);
  }
}

/** run, with a program that cannot be started (no nft in the image) as exit status 127 and its reason. */
async function tryRun(file: string, args: string[]): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  try {
    return await run(file, args);
  } catch (e) {
    return { exitCode: 127, stdout: '', stderr: `cannot run ${file}: ${(e as Error).message}` };
  }
}

async function purgeKernel(l: Layout, say: (s: string) => void, warn: (s: string) => void): Promise<void> {
  // nftables: our tables, each deleted alone (nft 1.0.6 has no "destroy"; a missing one is skipped).
  const listed = await tryRun('nft', ['-j', 'list', 'tables']);
  if (listed.exitCode !== 0) warn(`cannot list nftables tables: ${listed.stderr.trim()}`);
  else {
    const present = new Set(((JSON.parse(listed.stdout) as { nftables?: { table?: { family: string; name: string } }[] }).nftables ?? [])
      .flatMap((o) => (o.table ? [`${o.table.family} ${o.table.name}`] : [])));
    for (const [family, name] of OUR_TABLES) {
      if (!present.has(`${family} ${name}`)) continue;
      const r = await tryRun('nft', ['delete', 'table', family, name]);
      if (r.exitCode === 0) say(`removed nftables table ${family} ${name}`);
      else warn(`removing nftables table ${family} ${name} failed: ${r.stderr.trim()}`);
    }
  }
  // The L7 proxy's reply routing (src/l7/redirect.ts, L7_DIVERT): its rule and its table's route.
  for (const fam of [4, 6] as const) {
    const f = fam === 4 ? '-4' : '-6';
    if (await hasDivertRule(fam, (a) => tryRun('ip', a))) {
      const r = await tryRun('ip', [f, 'rule', 'del', 'priority', String(L7_DIVERT.priority)]);
      if (r.exitCode === 0) say(`removed IPv${fam} routing rule ${L7_DIVERT.priority} (L7 proxy replies)`);
      else warn(`removing IPv${fam} routing rule ${L7_DIVERT.priority} failed: ${r.stderr.trim()}`);
    }
    const routes = await tryRun('ip', [f, '-j', 'route', 'list', 'table', String(L7_DIVERT.table)]);
    if (routes.exitCode === 0 && (JSON.parse(routes.stdout || '[]') as unknown[]).length > 0) {
      const r = await tryRun('ip', [f, 'route', 'flush', 'table', String(L7_DIVERT.table)]);
      if (r.exitCode === 0) say(`removed IPv${fam} routing table ${L7_DIVERT.table} (L7 proxy replies)`);
      else warn(`removing IPv${fam} routing table ${L7_DIVERT.table} failed: ${r.stderr.trim()}`);
    }
  }
  // The bridge only when no port is left on it: a pod still on it keeps its network.
  if (isBridge(l.bridge)) {
    const ports = bridgePorts(l.bridge);
    if (ports.length) say(`kept bridge ${l.bridge}: ${ports.length} port(s) still on it (${ports.join(', ')})`);
    else await delLink(l.bridge, 'bridge', say, warn);
  }
  for (const link of AGENT_LINKS) if (linkExists(link)) await delLink(link, 'agent link', say, warn);
}

/** Puts back the sysctls nhi-cni changed in this namespace, each only while it still has the value nhi-cni set. */
function restoreSysctls(say: (s: string) => void, warn: (s: string) => void): void {
  const dir = sysctlOriginDir();
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return; // nothing changed (or not since the last reboot)
  }
  for (const n of names.sort()) {
    let rec: { path?: unknown; was?: unknown; set?: unknown };
    try {
      rec = JSON.parse(readNoFollow(join(dir, n))) as typeof rec;
    } catch {
      continue;
    }
    const { path, was, set } = rec;
    if (typeof path !== 'string' || !RECORDED_SYSCTLS.includes(path) || typeof was !== 'string' || !/^[0-9]{1,3}$/.test(was) || typeof set !== 'string') continue;
    const now = readSysctl(path);
    const key = path.replaceAll('/', '.');
    if (now === undefined) continue;
    if (now !== set) {
      say(`kept sysctl ${key} = ${now}: changed since nhi-cni set it to ${set}`);
      continue;
    }
    try {
      writeFileSync(`/proc/sys/${path}`, was);
      say(`restored sysctl ${key} = ${was} (nhi-cni had set ${set})`);
    } catch (e) {
      warn(`restoring sysctl ${key} = ${was} failed: ${(e as Error).message}`);
    }
  }
}

async function delLink(name: string, what: string, say: (s: string) => void, warn: (s: string) => void): Promise<void> {
  const r = await tryRun('ip', ['link', 'del', name]);
  if (r.exitCode === 0) say(`removed ${what} ${name}`);
  else warn(`removing ${what} ${name} failed: ${r.stderr.trim()}`);
}

export function uninstallCommand(): Command {
  return new Command('uninstall')
    .description('remove what install wrote (conflist first, then the links and the executable); --purge also the state, nftables tables, bridge and reservations')
    .option('--bin-dir <dir>', 'CNI plugin directory', DEFAULT_BIN_DIR)
    .option('--conf-dir <dir>', 'CNI configuration directory', DEFAULT_CONF_DIR)
    .option('--name <file name>', 'file name of the conflist in the conf dir', DEFAULT_CONFLIST_NAME)
    .option('--purge', 'also remove the state and run directories, the network\'s IPAM reservations, the nftables tables inet nhi_cni, bridge nhi_cni, inet nhi_policy and inet nhi_l7, the L7 proxy\'s routing rule, the bridge when no port is left on it, and the agent\'s nhi-vxlan / nhi-wg links, and restore the sysctls nhi-cni changed')
    .option('--force', 'go on while pods are attached (they will not get a working DEL)')
    .option('--state-dir <dir>', 'nhi-cni state directory (default: the conflist\'s stateDir, else /var/lib/nhi-cni)')
    .option('--data-dir <dir>', 'IPAM data directory (default: the conflist\'s, else /var/lib/cni/networks)')
    .option('--bridge <name>', 'the bridge (default: the conflist\'s, else nhi0)')
    .addHelpText('after', `
Run it as root on the node (in its network namespace), after draining it
(kubectl drain), or as the DaemonSet's clean-up step (docs/operations.md).
The conflist at <conf-dir>/<name> tells where the state, reservations and
bridge are; it is removed only when one of its plugins is nhi-cni's.
Links are removed only when they point to nhi-cni, the executable only when
it is a regular file. --purge puts ip_forward, IPv6 forwarding and
bridge-nf-call-ip(6)tables back to their value before nhi-cni changed them
(recorded under the run dir, so only in the same boot), unless they were
changed again since.
Exit status: 0 done, 1 refused (pods attached; nothing changed), 2 bad input
or something could not be removed (named on stderr).`)
    .action(async (o: Options) => {
      const say = (s: string) => process.stdout.write(`${s}\n`);
      const warnings: string[] = [];
      const warn = (s: string) => {
        warnings.push(s);
        process.stderr.write(`nhi-cni uninstall: ${s}\n`);
      };
      let binDir: string;
      let confDir: string;
      let l: Layout;
      try {
        binDir = checkAbs('--bin-dir', o.binDir);
        confDir = checkAbs('--conf-dir', o.confDir);
        if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*\.(conflist|conf|json)$/.test(o.name)) throw new Usage(`--name ${JSON.stringify(o.name)} must be a plain file name`);
        if (o.stateDir !== undefined) o.stateDir = checkAbs('--state-dir', o.stateDir);
        if (o.dataDir !== undefined) o.dataDir = checkAbs('--data-dir', o.dataDir);
        if (o.bridge !== undefined && !/^[A-Za-z0-9_.-]{1,15}$/.test(o.bridge)) throw new Usage(`--bridge ${JSON.stringify(o.bridge)} is not an interface name`);
        l = layoutOf(join(confDir, o.name), o);
      } catch (e) {
        if (!(e instanceof Usage)) throw e;
        process.stderr.write(`nhi-cni uninstall: ${e.message}. Nothing was changed.\n`);
        process.exitCode = EXIT.usage;
        return;
      }
      const pods = attachedPods(l);
      if (pods.length && !o.force) {
        process.stderr.write(`nhi-cni uninstall: ${pods.length} pod(s) attached; drain the node first, or pass --force (their DEL will then fail). Nothing was changed.\n${pods.map((p) => `  ${p}\n`).join('')}`);
        process.exitCode = EXIT.none;
        return;
      }
      if (pods.length) process.stderr.write(`nhi-cni uninstall: --force: going on with ${pods.length} pod(s) attached\n`);

      // 1. The conflist: the runtime stops sending pods here.
      const conflist = join(confDir, o.name);
      if (l.conflistOurs) removeFile(conflist, say, 'file');
      else {
        try {
          lstatSync(conflist);
          say(`kept ${conflist}: none of its plugins is nhi-cni's`);
        } catch {
          // none installed
        }
      }
      // 2. The links, then the executable.
      for (const link of LINKS) removeFile(join(binDir, link), say, 'link');
      removeFile(join(binDir, BINARY_NAME), say, 'file');
      if (o.purge) {
        await purgeKernel(l, say, warn);
        if (l.network) removeTree(join(l.dataDir, l.network), `the reservations of network ${l.network} in`, say);
        else say(`kept the reservations in ${l.dataDir}: no conflist of nhi-cni names the network (nhi-cni ipam ls shows them)`);
        for (const d of l.stateDirs) purgeStateDir(d, say);
        restoreSysctls(say, warn);
        removeTree(process.env.NHI_CNI_RUN_DIR || DEFAULT_RUN_DIR, 'run directory', say);
      }
      if (warnings.length) process.exitCode = EXIT.usage;
    });
}
