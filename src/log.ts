// Structured logs (pino JSON lines) to a file or to stderr, never to stdout,
// which carries the CNI result. pino is loaded on the first record at an
// enabled level, so a quiet ADD pays nothing for it (loading it costs ~15 ms
// of start-up). Records are written in call order; the process does not exit
// before they are out, since the CNI path ends by returning, not by exiting.
import type { Logger } from 'pino';

export type Level = 'debug' | 'info' | 'warn' | 'error' | 'silent';
const ORDER: Record<Level, number> = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 };

export interface LogOptions {
  file?: string | undefined;
  level?: string | undefined;
}

let options: { file?: string; level: Level } = { level: 'warn' };
let logger: Promise<Logger> | undefined;

function isLevel(l: unknown): l is Level {
  return typeof l === 'string' && l in ORDER;
}

/** Later calls override earlier ones (the skel applies config, then environment). */
export function configureLog(o: LogOptions): void {
  const level = isLevel(o.level) ? o.level : options.level;
  const file = o.file && o.file.startsWith('/') ? o.file : options.file;
  options = file ? { file, level } : { level };
  logger = undefined;
}

async function create(opts: typeof options): Promise<Logger> {
  const { pino } = await import('pino');
  return pino(
    {
      level: opts.level,
      // Explicit base: no hostname lookup, nothing frozen at build time.
      base: { pid: process.pid, plugin: 'nhi-cni' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    pino.destination({ dest: opts.file ?? 2, sync: true, mkdir: true }),
  );
}

function at(level: Exclude<Level, 'silent'>) {
  return (obj: object, msg: string): void => {
    if (ORDER[level] < ORDER[options.level]) return;
    logger ??= create(options);
    void logger.then((l) => l[level](obj, msg)).catch(() => {
      // a log that cannot be written must not fail the CNI request
    });
  };
}

export const log = { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') };

