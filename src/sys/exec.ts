// Runs a program with an argument array (never a shell string) and, where
// given, its stdin. Every process the plugin spawns goes through here, which
// is also where they are counted (NHI_CNI_TRACE_EXEC=1 logs each one).
import { execa } from 'execa';
import { existsSync } from 'node:fs';
import { CniError, Code } from '../cni/errors.js';
import { tracing } from './trace.js';

export interface ExecResult {
  stdout: string;
  stderr: string;
  exitCode: number;
}

let spawned = 0;

/** How many processes this plugin process has started so far. */
export function spawnCount(): number {
  return spawned;
}

export async function run(file: string, args: string[], input?: string): Promise<ExecResult> {
  spawned++;
  const trace = tracing();
  const t0 = trace ? performance.now() : 0;
  try {
    const r = await execa(file, args, { input: input ?? '', reject: false, stripFinalNewline: false, env: { LC_ALL: 'C' }, extendEnv: true });
    if (r.failed && r.exitCode === undefined) {
      throw new CniError(Code.SystemFailure, `cannot run ${file}`, r.message);
    }
    // One line per process, written when it ends: "nhi-cni exec: <cmd> (<ms> ms)".
    if (trace) process.stderr.write(`nhi-cni exec: ${file} ${args.join(' ')} (${(performance.now() - t0).toFixed(1)} ms, ended at ${performance.now().toFixed(1)} ms)\n`);
    return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? 1 };
  } catch (e) {
    if (e instanceof CniError) throw e;
    throw new CniError(Code.SystemFailure, `cannot run ${file}`, (e as Error).message);
  }
}

/** Whether a program can be found on PATH (for STATUS), without running it. */
export function onPath(bin: string): boolean {
  return (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').some((d) => d && existsSync(`${d}/${bin}`));
}
