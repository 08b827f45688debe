// nhi-cni: a CNI plugin when CNI_COMMAND is set (kubelet, containerd, cnitool),
// a command line for people when it is not.
import { loadBundle } from './lazy.js';
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
    process.exitCode = await runCni(process.env, invokedAs);
    return;
  }
  // The command line for people is a lazy bundle (src/lazy.ts): not in the snapshot an ADD deserializes.
  const { runCli } = await loadBundle('cli');
  process.exitCode = await runCli(process.argv);
}
