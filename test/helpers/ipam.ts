// Configs and direct invocations of host-local IPAM, ours and the reference's.
import { spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { DIST, REF_CNI_DIR } from './paths.js';
import { invoke, parse, type Run } from './plugin.js';

export const NHI_IPAM = `${DIST}/nhi-ipam`;
export const REF_HOST_LOCAL = `${REF_CNI_DIR}/host-local`;

export function ipamConfig(o: { name: string; dataDir: string; cniVersion?: string; ipam?: Record<string, unknown>; extra?: Record<string, unknown> }) {
  return {
    cniVersion: o.cniVersion ?? '1.0.0',
    name: o.name,
    type: 'bridge',
    ipam: { type: 'nhi-ipam', dataDir: o.dataDir, ...o.ipam },
    ...o.extra,
  };
}

export function ipamEnv(verb: string, containerId = 'ctr1', ifname = 'eth0', extra: Record<string, string> = {}) {
  return { CNI_COMMAND: verb, CNI_CONTAINERID: containerId, CNI_NETNS: '/var/run/netns/unused', CNI_IFNAME: ifname, CNI_PATH: DIST, ...extra };
}

/** One synchronous IPAM invocation (IPAM touches only files: no namespace needed). */
export function runIpam(binary: string, verb: string, config: object, containerId = 'ctr1', ifname = 'eth0', extra: Record<string, string> = {}): Run {
  return invoke({ binary, env: ipamEnv(verb, containerId, ifname, extra), stdin: JSON.stringify(config) });
}

/** The same, but asynchronous, for running many at once. */
export function runIpamAsync(binary: string, verb: string, config: object, containerId: string, ifname = 'eth0'): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(binary, [], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...ipamEnv(verb, containerId, ifname) } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => (stdout += d));
    p.stderr.on('data', (d) => (stderr += d));
    p.on('close', (code) => resolve({ status: code ?? -1, stdout, stderr, json: parse(stdout) }));
    p.stdin.end(JSON.stringify(config));
  });
}

/** Names in a network's IPAM directory, sorted. */
export function filesIn(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
