// Test hooks, off unless NHI_CNI_TEST_HOOKS=1: NHI_CNI_CRASH_AFTER=<point>
// kills the process with SIGKILL right after that point, as a node losing
// power or the OOM killer would, so tests can prove what survives a crash.
export function crashPoint(name: string): void {
  if (process.env.NHI_CNI_TEST_HOOKS === '1' && process.env.NHI_CNI_CRASH_AFTER === name) process.kill(process.pid, 'SIGKILL');
}
