// NHI_CNI_TRACE_EXEC=1: one stderr line per process spawned (sys/exec.ts) and
// per phase of an ADD, with the time since the process started. Off, a trace
// call costs one comparison.
export const tracing = (): boolean => process.env.NHI_CNI_TRACE_EXEC === '1';

export function trace(what: string): void {
  if (tracing()) process.stderr.write(`nhi-cni: ${what} at ${performance.now().toFixed(1)} ms\n`);
}
