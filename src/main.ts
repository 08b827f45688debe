// nhi-cni: a CNI plugin when CNI_COMMAND is set (kubelet, containerd, cnitool),
// a command line for people when it is not.
import { loadBundle } from './lazy.js';
import { flushLog } from './log.js';
import { runCni } from './plugin/skel.js';

export async function main(): Promise<void> {
  try {
    await run();
  } catch (e: unknown) {
    process.stderr.write(`nhi-cni: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exitCode = 1;
  }
}

async function run(): Promise<void> {
  const invokedAs = process.argv[1] ?? 'nhi-cni';
  if (process.env.CNI_COMMAND !== undefined) {
    const code = await runCni(process.env, invokedAs);
    // The answer is on stdout (written synchronously): once the log lines
    // are out, exit now. Left to drain, the event loop would end with Node
    // tearing its whole heap down first, ≈15 ms of every ADD on a slow hour
    // for nothing (and wait for whatever a library left open).
    await flushLog();
    process.exit(code);
  }
  // The command line for people is a lazy bundle (src/lazy.ts): not in the snapshot an ADD deserializes.
  const { runCli } = await loadBundle('cli');
  process.exitCode = await runCli(process.argv);
}
