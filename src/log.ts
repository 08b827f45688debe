// Structured logs (pino JSON lines) to a file or to stderr, never to stdout,
// which carries the CNI result. The logger is built on first use at an enabled
// level, so a quiet ADD pays for nothing but a level comparison.
import { pino, type Logger } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<Level, number> = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 };

export interface LogOptions {
  file?: string | undefined;
  level?: string | undefined;
}

let options: { file?: string; level: Level } = { level: 'warn' };
let logger: Logger | undefined;

function isLevel(l: unknown): l is Level {
  return typeof l === 'string' && l in ORDER;
}

/** Later calls override earlier ones; the environment wins over config. */
export function configureLog(o: LogOptions): void {
  const level = isLevel(o.level) ? o.level : options.level;
  const file = o.file && o.file.startsWith('/') ? o.file : options.file;
  options = file ? { file, level } : { level };
  logger = undefined;
}

function get(): Logger {
  logger ??= pino(
    {
      level: options.level,
      // Explicit base: pid only. No hostname lookup, and nothing a
      // snapshot could freeze at build time.
      base: { pid: process.pid, plugin: 'nhi-cni' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: options.file ?? 2, sync: true, mkdir: true }),
  );
  return logger;
}

function at(level: Exclude<Level, 'silent'>) {
  return (obj: object, msg: string): void => {
    if (ORDER[level] < ORDER[options.level]) return;
    get()[level](obj, msg);
  };
}

export const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };
