// The CNI process contract: environment and stdin in, one JSON document on
// stdout, exit status 0 or 1. Loads nothing heavy until it knows it must:
// VERSION and early errors return before zod, pino or any plugin module is
// evaluated (each of those costs milliseconds on every container event).
import { basename } from 'node:path';
import { decodeConfig, MAX_STDIN_BYTES } from '../cni/config.js';
import { podOfArgs } from '../cni/args.js';
import { parseEnv, type Verb } from '../cni/env.js';
import { CniError, Code, errorJson } from '../cni/errors.js';
import { configVersion, CURRENT_VERSION, requireVerbVersion, SUPPORTED_VERSIONS, type CniVersion } from '../cni/version.js';
import { redact } from '../cni/redact.js';
import { unknownKeys } from '../cni/suggest.js';
import { readStdin, writeStdout } from '../sys/stdio.js';
import { trace } from '../sys/trace.js';
import type { PluginType } from './request.js';

export const PLUGIN_TYPES = ['nhi-cni', 'nhi-ipam', 'nhi-policy'] as const;
/** Top-level keys of the spec and of libcni's runtime injection, known to every type. */
const CNI_KEYS = ['cniVersion', 'cniVersions', 'name', 'type', 'args', 'ipMasq', 'ipam', 'dns', 'runtimeConfig', 'capabilities', 'prevResult', 'disableCheck', 'disableGC', 'cni.dev/attachments', 'cni.dev/valid-attachments', 'log'];

async function loadType(name: string): Promise<PluginType> {
  switch (name) {
    case 'nhi-ipam':
      return (await import('./ipam.js')).ipamPlugin;
    case 'nhi-cni':
      return (await import('./cni.js')).cniPlugin;
    case 'nhi-policy':
      return (await import('./policy.js')).policyPlugin;
    default:
      throw new CniError(Code.InvalidConfig, `plugin type ${name} is not available in this build`);
  }
}

/**
 * The type to run: the config's `type` when it is one of ours, else the name
 * this binary was invoked under (a main plugin runs its IPAM delegate as
 * CNI_PATH/<ipam.type>, with its own config on stdin).
 */
export function chooseType(configType: unknown, invokedAs: string): string {
  const known = (t: unknown): t is string => typeof t === 'string' && (PLUGIN_TYPES as readonly string[]).includes(t);
  if (known(configType)) return configType;
  const self = basename(invokedAs);
  if (known(self)) return self;
  throw new CniError(
    Code.InvalidConfig,
    `cannot tell which nhi-cni plugin type to run: config type is ${JSON.stringify(configType)} and the binary is called ${JSON.stringify(self)}`,
    `install the binary (or a link to it) as one of ${PLUGIN_TYPES.join(', ')}`,
  );
}

/**
 * The last resort: an error that escaped every await (a bug) still ends as
 * one spec error JSON (code 100) and exit status 1, never a stack trace on an
 * empty stdout. The paths themselves await every promise they start; this
 * only keeps a mistake from breaking the process contract.
 */
function guard(version: () => CniVersion, answered: () => boolean): void {
  const lastResort = (e: unknown) => {
    // Once the answer is out, it stands: the process ends with its status.
    if (answered()) return;
    try {
      const why = e instanceof Error ? e.message : String(e);
      writeStdout(`${JSON.stringify(errorJson(new CniError(Code.Internal, 'internal error', `unhandled: ${why}`), version()))}\n`);
    } finally {
      process.exit(1);
    }
  };
  process.on('unhandledRejection', lastResort);
  process.on('uncaughtException', lastResort);
}

export async function runCni(env: Record<string, string | undefined>, invokedAs: string): Promise<number> {
  let version: CniVersion = CURRENT_VERSION;
  let answered = false;
  let cenv: ReturnType<typeof parseEnv> | undefined;
  guard(() => version, () => answered);
  try {
    trace('started');
    cenv = parseEnv(env);
    if (cenv.verb === 'VERSION') {
      // The reference plugins answer with their newest version and ignore stdin.
      writeStdout(`${JSON.stringify({ cniVersion: CURRENT_VERSION, supportedVersions: SUPPORTED_VERSIONS })}\n`);
      return 0;
    }
    const stdin = readStdin(MAX_STDIN_BYTES);
    trace('stdin read');
    const config = decodeConfig(stdin);
    version = configVersion(config.cniVersion);
    requireVerbVersion(cenv.verb, version);
    const type = chooseType(config.type, invokedAs);
    const [plugin, { configureLog, logFromConfig, logFromEnv, log }] = await Promise.all([loadType(type), import('../log.js')]);
    trace('plugin and log loaded');
    configureLog(logFromConfig(config.log));
    configureLog(logFromEnv(env));
    // The spec lets a plugin ignore keys it does not know (a conflist may be
    // shared by plugin versions); a typo is worth a debug line, not an error.
    const unknown = plugin.keys && unknownKeys(config, [...CNI_KEYS, ...plugin.keys]);
    if (unknown?.length) log.debug({ keys: unknown, type }, 'unknown top-level config keys ignored');
    const result = await dispatch(plugin, cenv.verb, { env: cenv, config, version, stdin });
    answered = true;
    if (result) writeStdout(`${JSON.stringify(result)}\n`);
    return 0;
  } catch (e) {
    await logFailure(e, cenv);
    answered = true;
    writeStdout(`${JSON.stringify(errorJson(e, version))}\n`);
    return 1;
  }
}

async function dispatch(plugin: PluginType, verb: Exclude<Verb, 'VERSION'>, req: Parameters<PluginType['add']>[0]) {
  switch (verb) {
    case 'ADD': {
      const { toVersion } = await import('../cni/result.js');
      return toVersion({ cniVersion: req.version, ...(await plugin.add(req)) }, req.version);
    }
    case 'DEL':
      return void (await plugin.del(req));
    case 'CHECK':
      return void (await plugin.check(req));
    case 'GC':
      return void (await plugin.gc(req));
    case 'STATUS':
      return void (await plugin.status(req));
  }
}

async function logFailure(e: unknown, env: ReturnType<typeof parseEnv> | undefined): Promise<void> {
  try {
    const { log } = await import('../log.js');
    // What the log gets is what stdout gets: redacted (errorJson).
    const j = errorJson(e, CURRENT_VERSION);
    // Which attachment failed: the error line must be findable by container and pod.
    const pod = env ? podOfArgs(env.args) : undefined;
    const who = env ? { verb: env.verb, containerId: env.containerId, ifname: env.ifname, netns: env.netns, ...(pod ? { pod } : {}) } : {};
    const durationMs = Math.round(performance.now());
    if (e instanceof CniError && e.code !== Code.Internal) log.warn({ ...who, code: j.code, details: j.details, durationMs }, j.msg);
    else log.error({ ...who, code: j.code, details: j.details, stack: e instanceof Error && e.stack ? redact(e.stack) : undefined, durationMs }, 'internal error');
  } catch {
    // logging must never hide the error itself
  }
}
