// Structured logs (pino JSON lines) to a file or to stderr, never to stdout,
// which carries the CNI result. pino is loaded on the first record at an
// enabled level (from its lazy bundle, src/pino/index.ts: not in the start-up
// snapshot), so a quiet ADD pays nothing for it (loading it costs ~15 ms
// of start-up). Records are written in call order; the process does not exit
// before they are out, since the CNI path ends by returning, not by exiting.
import { closeSync, constants, fchmodSync, fstatSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Logger } from 'pino';
import { CniError, Code } from './cni/errors.js';
import { absolutePathProblem } from './cni/paths.js';
import { redact } from './cni/redact.js';
import { refuseUnknownKeys } from './cni/suggest.js';
import { loadBundle } from './lazy.js';

/** pino's levels, and silent. */
export const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type Level = (typeof LEVELS)[number];
const ORDER: Record<Level, number> = { trace: 10, debug: 20, info: 30, warn: 40, error: 50, fatal: 60, silent: 100 };

export interface LogOptions {
  file?: string | undefined;
  level?: Level | undefined;
}

let options: { file?: string; level: Level } = { level: 'warn' };
let logger: Promise<Logger> | undefined;

function isLevel(l: unknown): l is Level {
  return typeof l === 'string' && (LEVELS as readonly string[]).includes(l);
}

/**
 * The `log` section of a plugin config. Strict: a level pino does not know or
 * a relative file would otherwise be dropped silently, and the operator would
 * look for logs that are never written (code 7 naming the key).
 */
export function logFromConfig(raw: unknown): LogOptions {
  if (raw === undefined) return {};
  const bad = (msg: string) => new CniError(Code.InvalidConfig, msg);
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw bad('log must be an object with "file" and/or "level"');
  refuseUnknownKeys(raw, ['file', 'level'], 'log');
  const { file, level } = raw as Record<string, unknown>;
  const out: LogOptions = {};
  if (level !== undefined) {
    if (!isLevel(level)) throw bad(`log.level ${JSON.stringify(level)} is not a log level: use one of ${LEVELS.join(', ')}`);
    out.level = level;
  }
  if (file !== undefined) {
    if (typeof file !== 'string') throw bad(`log.file ${JSON.stringify(file)} must be an absolute path`);
    const why = absolutePathProblem(file);
    if (why) throw bad(`log.file ${JSON.stringify(file)} ${why}`);
    out.file = file;
  }
  return out;
}

/** NHI_CNI_LOG_LEVEL and NHI_CNI_LOG_FILE; empty means unset, anything else invalid is code 4. */
export function logFromEnv(env: Record<string, string | undefined>): LogOptions {
  const bad = (msg: string) => new CniError(Code.InvalidEnv, msg);
  const { NHI_CNI_LOG_LEVEL: level, NHI_CNI_LOG_FILE: file } = env;
  const out: LogOptions = {};
  if (level) {
    if (!isLevel(level)) throw bad(`NHI_CNI_LOG_LEVEL ${JSON.stringify(level)} is not a log level: use one of ${LEVELS.join(', ')}`);
    out.level = level;
  }
  if (file) {
    const why = absolutePathProblem(file);
    if (why) throw bad(`NHI_CNI_LOG_FILE ${JSON.stringify(file)} ${why}`);
    out.file = file;
  }
  return out;
}

/** Later calls override earlier ones (the skel applies config, then environment). */
export function configureLog(o: LogOptions): void {
  const level = o.level ?? options.level;
  const file = o.file ?? options.file;
  options = file ? { file, level } : { level };
  logger = undefined;
}

/**
 * The log file, opened by us rather than by pino: pino would create it 0644
 * (0666 under umask 000) and follow a symlink planted at its name. Created
 * 0600, never through a symlink, appended to; an existing file is narrowed
 * to 0600 too.
 */
export function openLogFile(path: string): number {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  const fd = openSync(path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK, 0o600);
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error(`${path} is not a regular file`);
    if (st.mode & 0o077) fchmodSync(fd, 0o600);
  } catch (e) {
    closeSync(fd);
    throw e;
  }
  return fd;
}

async function create(opts: typeof options): Promise<Logger> {
  const { pino } = await loadBundle('pino');
  return pino(
    {
      level: opts.level,
      // Explicit base: no hostname lookup, nothing frozen at build time.
      base: { pid: process.pid, plugin: 'nhi-cni' },
      timestamp: pino.stdTimeFunctions.isoTime,
      // Never a secret in the log, whatever a caller put into a record.
      formatters: { log: (o) => redactDeep(o) as Record<string, unknown> },
      hooks: {
        logMethod(args, method) {
          method.apply(this, args.map((a) => (typeof a === 'string' ? redact(a) : a)) as Parameters<typeof method>);
        },
      },
    },
    pino.destination({ dest: opts.file ? openLogFile(opts.file) : 2, sync: true }),
  );
}

function redactDeep(v: unknown, depth = 0): unknown {
  if (typeof v === 'string') return redact(v);
  if (depth > 8 || v === null || typeof v !== 'object') return v;
  if (v instanceof Error) return { message: redact(v.message), stack: v.stack && redact(v.stack) };
  if (Array.isArray(v)) return v.map((x) => redactDeep(x, depth + 1));
  return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, redactDeep(x, depth + 1)]));
}

/** Log lines on their way (the logger is created on first use): flushLog waits for them. */
const pending = new Set<Promise<void>>();

function at(level: 'debug' | 'info' | 'warn' | 'error') {
  return (obj: object, msg: string): void => {
    if (ORDER[level] < ORDER[options.level]) return;
    logger ??= create(options);
    const p = logger.then((l) => l[level](obj, msg)).catch(() => {
      // a log that cannot be written must not fail the CNI request
    });
    pending.add(p);
    void p.finally(() => pending.delete(p));
  };
}

/** Resolves once every line logged so far is written (the destination is synchronous). */
export async function flushLog(): Promise<void> {
  while (pending.size) await Promise.all([...pending]);
}

export const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
