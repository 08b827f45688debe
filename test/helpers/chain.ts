// Conflists for the chain tests, for nhi-cni and for the reference bridge +
// host-local (to show the same tests pass against the yardstick), and a
// minimal runtime for cniVersion 1.1.0, which Debian's libcni does not speak.
import { spawn, spawnSync } from 'node:child_process';
import type { Netns } from './netns.js';
import { BINARY, TEST_CNI_PATH } from './paths.js';
import { parse, type Run } from './plugin.js';
import { pluginConfig as libcniConfig } from '../../scripts/cni-lib.mjs';

export type Kind = 'nhi-cni' | 'reference';

export interface ChainOptions {
  kind: Kind;
  name: string;
  cniVersion: string;
  bridge: string;
  ranges: string[][];
  dir: string;
  mtu?: number;
  ipMasq?: boolean;
  isDefaultGateway?: boolean;
  extraPlugins?: Record<string, unknown>[];
  capabilities?: Record<string, boolean>;
}

export function chainConflist(o: ChainOptions) {
  const ipam = {
    type: 'host-local',
    dataDir: `${o.dir}/ipam`,
    ranges: o.ranges.map((set) => set.map((subnet) => ({ subnet }))),
  };
  const main: Record<string, unknown> = {
    type: o.kind === 'nhi-cni' ? 'nhi-cni' : 'bridge',
    bridge: o.bridge,
    isGateway: true,
    isDefaultGateway: o.isDefaultGateway ?? true,
    ipMasq: o.ipMasq ?? true,
    ipam,
  };
  if (o.kind === 'nhi-cni') main.stateDir = `${o.dir}/state`;
  if (o.mtu) main.mtu = o.mtu;
  if (o.capabilities) main.capabilities = o.capabilities;
  return { cniVersion: o.cniVersion, name: o.name, plugins: [main, ...(o.extraPlugins ?? [])] };
}

export function testEnv(dir: string): Record<string, string> {
  return { NHI_CNI_RUN_DIR: `${dir}/run` };
}

/** The config one plugin of a list receives (what libcni builds). */
export function pluginConfig(list: ReturnType<typeof chainConflist>, i: number, prevResult?: unknown, runtimeConfig?: unknown) {
  // libcni's own building (shared with the benchmarks); runtimeConfig is
  // given whole here, so tests can pass capabilities a list does not declare.
  const c: Record<string, unknown> = libcniConfig(list, list.plugins[i]!, prevResult);
  if (runtimeConfig !== undefined) c.runtimeConfig = runtimeConfig;
  return c;
}

export interface DirectOptions {
  node: Netns;
  verb: string;
  config: object;
  containerId: string;
  netns?: string;
  ifname?: string;
  env?: Record<string, string>;
  binary?: string;
}

function directArgs(o: DirectOptions) {
  const env: Record<string, string> = {
    PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin',
    CNI_COMMAND: o.verb,
    CNI_CONTAINERID: o.containerId,
    CNI_NETNS: o.netns ?? '',
    CNI_IFNAME: o.ifname ?? 'eth0',
    CNI_PATH: TEST_CNI_PATH,
    ...o.env,
  };
  return { args: ['netns', 'exec', o.node.name, o.binary ?? BINARY], env };
}

/** One plugin invocation inside the node namespace, as a runtime makes it. */
export function direct(o: DirectOptions): Run & { signal: NodeJS.Signals | null } {
  const { args, env } = directArgs(o);
  const r = spawnSync('ip', args, { env, input: JSON.stringify(o.config), encoding: 'utf8' });
  return { status: r.status ?? -1, signal: r.signal, stdout: r.stdout, stderr: r.stderr, json: parse(r.stdout) };
}

export function directAsync(o: DirectOptions): Promise<Run> {
  const { args, env } = directArgs(o);
  return new Promise((resolve) => {
    const p = spawn('ip', args, { env });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr, json: parse(stdout) }));
    p.stdin.end(JSON.stringify(o.config));
  });
}
