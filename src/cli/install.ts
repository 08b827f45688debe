// `nhi-cni install`: put this executable, its plugin-type links and a conflist
// where container runtimes look for them, the way an operator (or a DaemonSet's
// init container) expects. Every argument is checked before anything is
// written; every file is replaced by a rename, so a runtime never executes or
// reads half a file, and an ADD already running keeps the inode it started on.
import { Command } from 'commander';
import { closeSync, constants, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, statSync, symlinkSync, unlinkSync } from 'node:fs';
import { isSea } from 'node:sea';
import { join } from 'node:path';
import { validateNetworkName } from '../cni/config.js';
import { absolutePathProblem } from '../cni/paths.js';
import { isSupported, SUPPORTED_VERSIONS } from '../cni/version.js';
import { formatCidr, networkOf, parseCidr } from '../net/ip.js';
import { tmpName, writeFileAtomic } from '../sys/files.js';

/** The text of conflists/10-nhi-cni.conflist, inlined by scripts/build.mjs. */
declare const NHI_CNI_DEFAULT_CONFLIST: string;

export const DEFAULT_BIN_DIR = '/opt/cni/bin';
export const DEFAULT_CONF_DIR = '/etc/cni/net.d';
export const DEFAULT_CONFLIST_NAME = '10-nhi-cni.conflist';
const BINARY_NAME = 'nhi-cni';
const LINKS = ['nhi-ipam', 'nhi-policy'];
const MAX_CONFLIST_BYTES = 1 << 20;
/** What libcni (and so containerd and CRI-O) loads from a conf dir. */
const CONF_EXTENSIONS = ['.conf', '.conflist', '.json'];
const CONFLIST_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*\.conflist$/;

interface Options {
  binDir: string;
  confDir: string;
  /** A file name; false with --no-conflist; undefined for the built-in one. */
  conflist?: string | false;
  subnet?: string;
  name: string;
}

/** A refusal: printed as `nhi-cni: install: <message>`, exit status 1. */
class Refusal extends Error {}

export function installCommand(): Command {
  return new Command('install')
    .description('install this executable, its plugin links (nhi-ipam, nhi-policy) and a conflist on this node')
    .option('--bin-dir <dir>', 'CNI plugin directory (the runtime\'s CNI_PATH)', DEFAULT_BIN_DIR)
    .option('--conf-dir <dir>', 'CNI configuration directory', DEFAULT_CONF_DIR)
    .option('--conflist <file>', 'install this conflist instead of the built-in Kubernetes-ready one')
    .option('--no-conflist', 'install the executable and links only')
    .option('--subnet <cidr>', "this node's pod subnet, put into the built-in conflist's IPAM range (required for it)")
    .option('--name <file name>', 'file name of the conflist in the conf dir', DEFAULT_CONFLIST_NAME)
    .addHelpText(
      'after',
      `
What it does:
  <bin-dir>/nhi-cni                 a copy of this executable, mode 0755
  <bin-dir>/nhi-ipam, nhi-policy    symlinks to nhi-cni
  <conf-dir>/<name>                 the conflist (written last: it tells the runtime the network is ready)
Each file is written to a temporary name, fsynced and renamed over the old one,
so a runtime never runs or reads half a file and a running ADD keeps the old one.
Directories must be absolute paths without "..". Nothing is written unless every
argument is valid. The built-in conflist (nhi-cni with a bridge nhi0, gateway,
masquerade and hairpin; then the reference portmap and bandwidth plugins, which
must be in the bin dir too) is conflists/10-nhi-cni.conflist with --subnet as its range.

Examples:
  nhi-cni install --subnet 10.244.1.0/24
  nhi-cni install --bin-dir /host/opt/cni/bin --conf-dir /host/etc/cni/net.d --subnet "$POD_CIDR"
  nhi-cni install --conflist ./my.conflist --name 20-my.conflist
  nhi-cni install --no-conflist
`,
    )
    .action((opts: Options) => {
      try {
        install(opts);
      } catch (e) {
        if (e instanceof Refusal) throw new Error(`install: ${e.message}`);
        const err = e as NodeJS.ErrnoException;
        throw new Error(`install failed: ${err.message}${err.code === 'EACCES' || err.code === 'EPERM' || err.code === 'EROFS' ? ' (run as root, with the directories writable)' : ''}`);
      }
    });
}

function install(opts: Options): void {
  // 1. Check everything; write nothing.
  const binDir = checkDir('--bin-dir', opts.binDir);
  const confDir = checkDir('--conf-dir', opts.confDir);
  const source = sourceExecutable();
  let conflist: { text: string; summary: string } | undefined;
  if (opts.conflist === false) {
    if (opts.subnet !== undefined) refuse('--subnet has no effect with --no-conflist; drop one of them. Nothing was changed.');
  } else {
    const name = opts.name;
    if (!CONFLIST_NAME.test(name) || name.length > 255) {
      refuse(`--name ${JSON.stringify(name)} must be a plain file name ending in ".conflist" (letters, digits, "_", ".", "-"), such as ${DEFAULT_CONFLIST_NAME}. Nothing was changed.`);
    }
    conflist = typeof opts.conflist === 'string' ? conflistFromFile(opts.conflist, opts.subnet) : builtinConflist(opts.subnet);
  }
  const binary = join(binDir, BINARY_NAME);
  refuseIfDirectory(binary);
  for (const link of LINKS) refuseIfDirectory(join(binDir, link));
  if (confDir) refuseIfDirectory(join(confDir, opts.name));

  // 2. Write: the binary, then the links, then the conflist (a runtime takes a
  // conflist to mean the network is ready, so it must come last).
  const say = (line: string) => process.stdout.write(`${line}\n`);
  if (ensureDir(binDir)) say(`created ${binDir}`);
  writeFileAtomic(binary, { copyOf: source }, { mode: 0o755, durable: true });
  say(`installed ${binary} (${statSync(binary).size} bytes, from ${source})`);
  for (const link of LINKS) {
    const ltmp = tmpName(binDir, link);
    removeStale(ltmp);
    try {
      symlinkSync(BINARY_NAME, ltmp);
      renameSync(ltmp, join(binDir, link));
    } catch (e) {
      removeStale(ltmp);
      throw e;
    }
    say(`linked ${join(binDir, link)} -> ${BINARY_NAME}`);
  }
  syncDir(binDir);

  if (!conflist) {
    say('conflist: not installed (--no-conflist)');
    return;
  }
  if (ensureDir(confDir)) say(`created ${confDir}`);
  const target = join(confDir, opts.name);
  writeFileAtomic(target, conflist.text, { mode: 0o644, durable: true });
  syncDir(confDir);
  say(`wrote ${target} (${conflist.summary})`);
  const earlier = readdirSync(confDir)
    .filter((f) => f !== opts.name && !f.startsWith('.') && CONF_EXTENSIONS.some((x) => f.endsWith(x)))
    .sort()
    .filter((f) => f < opts.name);
  if (earlier.length) {
    say(`note: ${earlier.join(', ')} in ${confDir} sort${earlier.length === 1 ? 's' : ''} before ${opts.name}; runtimes use the first file, so ${opts.name} takes effect only once ${earlier.length === 1 ? 'it is' : 'they are'} removed`);
  }
}

function refuse(msg: string): never {
  throw new Refusal(msg);
}

/** An absolute path without ".." components, that is a directory if it exists. */
function checkDir(option: string, dir: string): string {
  checkPath(option, dir);
  let st;
  try {
    st = statSync(dir);
  } catch {
    return dir; // created later
  }
  if (!st.isDirectory()) refuse(`${option} ${JSON.stringify(dir)} exists and is not a directory. Nothing was changed.`);
  return dir;
}

function checkPath(option: string, path: string): void {
  const why = absolutePathProblem(path);
  if (why) refuse(`${option} ${JSON.stringify(path)} ${why}. Nothing was changed.`);
}

function refuseIfDirectory(path: string): void {
  try {
    if (statSync(path).isDirectory()) refuse(`${path} is a directory; it would have to be replaced by a file. Move it away first. Nothing was changed.`);
  } catch (e) {
    if (e instanceof Refusal) throw e;
  }
}

/** The single executable this process runs from (in the SEA, process.execPath is the binary itself). */
function sourceExecutable(): string {
  if (!isSea()) {
    refuse(`this is Node running a script (${process.execPath}), not the nhi-cni single executable; build it (npm run build) and run dist/nhi-cni install. Nothing was changed.`);
  }
  return process.execPath;
}

/** Validates --subnet: a CIDR whose host bits are zero, with room for pods. */
function checkSubnet(subnet: string | undefined): string {
  if (subnet === undefined) {
    refuse("--subnet is required with the built-in conflist: give this node's pod subnet (e.g. kubectl get node <node> -o jsonpath='{.spec.podCIDR}'), or --conflist <file>, or --no-conflist. Nothing was changed.");
  }
  if (subnet.trim() === '') refuse("--subnet is empty: set it to this node's pod subnet (in the DaemonSet, the POD_CIDR env var). Nothing was changed.");
  if (subnet.includes('$(')) refuse(`--subnet is ${JSON.stringify(subnet)}: a variable was not expanded; define it in the container's env. Nothing was changed.`);
  const cidr = parseCidr(subnet);
  if (!cidr) refuse(`--subnet ${JSON.stringify(subnet)} is not a subnet in CIDR notation, such as 10.244.1.0/24 or fd00:10:244:1::/64. Nothing was changed.`);
  const network = { ip: networkOf(cidr), prefix: cidr.prefix };
  if (network.ip.value !== cidr.ip.value) {
    refuse(`--subnet ${subnet} is not a network address (its host bits are set); did you mean ${formatCidr(network)}? Nothing was changed.`);
  }
  const max = cidr.ip.family === 4 ? 30 : 126;
  if (cidr.prefix > max) refuse(`--subnet ${subnet} is too small for pods: the prefix must be at most /${max}. Nothing was changed.`);
  return formatCidr(network);
}

function builtinConflist(subnetArg: string | undefined): { text: string; summary: string } {
  const subnet = checkSubnet(subnetArg);
  if (typeof NHI_CNI_DEFAULT_CONFLIST !== 'string') refuse('this build has no built-in conflist; pass --conflist <file>. Nothing was changed.');
  const conf = JSON.parse(NHI_CNI_DEFAULT_CONFLIST) as Record<string, any>;
  const main = (conf.plugins as Record<string, any>[]).find((p) => p.type === 'nhi-cni');
  const range = main?.ipam?.ranges?.[0]?.[0];
  if (!range) throw new Error('the built-in conflist has no nhi-cni plugin with an IPAM range (a build bug)');
  range.subnet = subnet;
  if (subnet.includes(':') && Array.isArray(main!.ipam.routes)) {
    for (const r of main!.ipam.routes as { dst?: string }[]) if (r.dst === '0.0.0.0/0') r.dst = '::/0';
  }
  validateConflist(conf, 'the built-in conflist');
  return { text: `${JSON.stringify(conf, null, 2)}\n`, summary: `network ${conf.name}, subnet ${subnet}` };
}

function conflistFromFile(file: string, subnet: string | undefined): { text: string; summary: string } {
  checkPath('--conflist', file);
  if (subnet !== undefined) refuse('--subnet applies only to the built-in conflist; put the subnet into the file given with --conflist. Nothing was changed.');
  let buf: Buffer;
  try {
    if (statSync(file).size > MAX_CONFLIST_BYTES) refuse(`--conflist ${file} is larger than 1 MiB. Nothing was changed.`);
    buf = readFileSync(file);
  } catch (e) {
    if (e instanceof Refusal) throw e;
    refuse(`cannot read --conflist ${file}: ${(e as Error).message}. Nothing was changed.`);
  }
  let conf: unknown;
  try {
    conf = JSON.parse(buf.toString('utf8'));
  } catch (e) {
    refuse(`--conflist ${file} is not valid JSON: ${(e as Error).message}. Nothing was changed.`);
  }
  validateConflist(conf, `--conflist ${file}`);
  const text = buf.toString('utf8');
  return { text: text.endsWith('\n') ? text : `${text}\n`, summary: `network ${(conf as { name: string }).name}, from ${file}` };
}

/** The shape libcni needs: a name, a cniVersion it and we know, a list of plugins with a type. */
function validateConflist(conf: unknown, what: string): void {
  const bad = (why: string): never => refuse(`${what} is not a usable conflist: ${why}. Nothing was changed.`);
  if (typeof conf !== 'object' || conf === null || Array.isArray(conf)) bad('it must be a JSON object');
  const c = conf as Record<string, unknown>;
  if (typeof c.name !== 'string' || c.name === '') bad('"name" must be a non-empty string');
  const why = validateNetworkName(c.name as string);
  if (why) bad(`"name" ${JSON.stringify(c.name)}: ${why}`);
  if (typeof c.cniVersion !== 'string' || !isSupported(c.cniVersion)) bad(`"cniVersion" must be one of ${SUPPORTED_VERSIONS.join(', ')}`);
  if (!Array.isArray(c.plugins) || c.plugins.length === 0) bad('"plugins" must be a non-empty list');
  (c.plugins as unknown[]).forEach((p, i) => {
    if (typeof p !== 'object' || p === null || Array.isArray(p)) bad(`plugins[${i}] must be an object`);
    const type = (p as Record<string, unknown>).type;
    if (typeof type !== 'string' || type === '' || type.includes('/') || type === '.' || type === '..') {
      bad(`plugins[${i}].type must be a plugin file name`);
    }
  });
}

/** Creates the directory (and missing parents); true when it did not exist. */
function ensureDir(dir: string): boolean {
  return mkdirSync(dir, { recursive: true, mode: 0o755 }) !== undefined;
}

function removeStale(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // not there
  }
}

/** Makes the renames durable. */
function syncDir(dir: string): void {
  const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}
