// Running the plugin the two ways a runtime does: directly (env + stdin, as
// kubelet's runtime does for each plugin) and through libcni (cni-client).
import { execFile, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Netns } from './netns.js';
import { BINARY, CNI_CLIENT, TEST_CNI_PATH } from './paths.js';

export interface Run {
  status: number;
  stdout: string;
  stderr: string;
  json: any;
}

/** A plugin's stdout as JSON; undefined when empty or not JSON. */
export function parse(stdout: string): any {
  try {
    return stdout.trim() ? JSON.parse(stdout) : undefined;
  } catch {
    return undefined;
  }
}

export interface InvokeOptions {
  /** Run inside this namespace (the test's node); else in the caller's. */
  node?: Netns;
  binary?: string;
  env?: Record<string, string>;
  stdin?: string | Buffer;
}

/** Execs the plugin binary with CNI_* env and a config on stdin. */
export function invoke(o: InvokeOptions): Run {
  const bin = o.binary ?? BINARY;
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...o.env };
  const [cmd, args] = o.node ? ['ip', ['netns', 'exec', o.node.name, bin]] : [bin, []];
  const r = spawnSync(cmd as string, args as string[], { env, input: o.stdin ?? '', encoding: 'utf8', maxBuffer: 1 << 24 });
  return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json: parse(r.stdout) };
}

/** invoke() without blocking the test process (a server of the test, such as the API stand-in, keeps serving meanwhile). */
export function invokeAsync(o: InvokeOptions): Promise<Run> {
  const bin = o.binary ?? BINARY;
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...o.env };
  const [cmd, args] = o.node ? ['ip', ['netns', 'exec', o.node.name, bin]] : [bin, []];
  return new Promise((resolve) => {
    const child = execFile(cmd as string, args as string[], { env, encoding: 'utf8', maxBuffer: 1 << 24 }, (err, stdout, stderr) => {
      const status = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
      resolve({ status, stdout, stderr, json: parse(stdout) });
    });
    child.stdin!.on('error', () => {});
    child.stdin!.end(o.stdin ?? '');
  });
}

/** A scratch directory removed by cleanup(). */
export class Scratch {
  readonly dir = mkdtempSync(join(tmpdir(), 'nhi-test-'));
  path(...p: string[]): string {
    return join(this.dir, ...p);
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A libcni runtime: a conflist directory, a result cache, and our CNI_PATH. */
export class Runtime {
  readonly confDir: string;
  readonly cacheDir: string;
  constructor(
    readonly scratch: Scratch,
    readonly node: Netns,
    readonly cniPath = TEST_CNI_PATH,
  ) {
    this.confDir = scratch.path('net.d');
    this.cacheDir = scratch.path('cache');
    mkdirSync(this.confDir, { recursive: true });
    mkdirSync(this.cacheDir, { recursive: true });
  }

  writeConflist(conflist: { name: string } & Record<string, unknown>): void {
    writeFileSync(join(this.confDir, `${conflist.name}.conflist`), JSON.stringify(conflist, null, 2));
  }

  private clientEnv(env: Record<string, string>): Record<string, string> {
    return {
      PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
      NETCONFPATH: this.confDir,
      CNI_PATH: this.cniPath,
      CNI_CACHE_DIR: this.cacheDir,
      ...env,
    };
  }

  run(verb: 'add' | 'check' | 'del', network: string, pod: Netns | string, env: Record<string, string> = {}): Run {
    const podPath = typeof pod === 'string' ? pod : pod.path;
    const r = spawnSync('ip', ['netns', 'exec', this.node.name, CNI_CLIENT, verb, network, podPath], { encoding: 'utf8', env: this.clientEnv(env) });
    return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr, json: parse(r.stdout) };
  }

  /** run() without blocking the test process (a server of the test, such as the API stand-in, keeps serving meanwhile). */
  runAsync(verb: 'add' | 'check' | 'del', network: string, pod: Netns | string, env: Record<string, string> = {}): Promise<Run> {
    const podPath = typeof pod === 'string' ? pod : pod.path;
    return new Promise((resolve) => {
      execFile('ip', ['netns', 'exec', this.node.name, CNI_CLIENT, verb, network, podPath], { encoding: 'utf8', env: this.clientEnv(env) }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0;
        resolve({ status: code, stdout, stderr, json: parse(stdout) });
      });
    });
  }
}
