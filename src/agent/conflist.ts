// The node's conflist, written by the agent once its first full sync is
// applied (cilium#32168: a conflist appearing is what tells kubelet the
// network is ready, so it must not appear before the agent can serve). The
// node's spec.podCIDRs become host-local ranges (dual stack with two), then
// the policy section naming the agent's socket, then portmap and bandwidth.
// Written whole (temp + fsync + rename), never removed: DEL must keep working
// while the agent restarts.
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_DATA_DIR } from '../chain/ipam/config.js';
import { parseCidr } from '../net/ip.js';
import { writeFileAtomic } from '../sys/files.js';
import type { AgentOptions } from './options.js';

export const CONFLIST_NAME = '10-nhi-cni.conflist';

export function buildConflist(podCIDRs: string[], o: Pick<AgentOptions, 'stateDir' | 'socketPath' | 'clusterCidrs'> & Partial<Pick<AgentOptions, 'ipamDataDir'>>, podMtu?: number, kubeconfig?: string): Record<string, unknown> {
  const families = podCIDRs.map((c) => parseCidr(c)?.ip.family);
  const plugin: Record<string, unknown> = {
    type: 'nhi-cni',
    bridge: 'nhi0',
    isGateway: true,
    ipMasq: true,
    hairpinMode: true,
    stateDir: o.stateDir,
    ipam: {
      type: 'host-local',
      ranges: podCIDRs.map((subnet) => [{ subnet }]),
      ...(o.ipamDataDir !== undefined && o.ipamDataDir !== DEFAULT_DATA_DIR ? { dataDir: o.ipamDataDir } : {}),
      routes: families.map((f) => ({ dst: f === 6 ? '::/0' : '0.0.0.0/0' })),
    },
    // The plugin asks the agent who a pod is, and keeps the policies the agent applied (src/policy/agent-identity.ts).
    // …and, when the agent cannot answer, reads the pod from the API itself with this kubeconfig.
    policy: { agentSocket: o.socketPath, ...(kubeconfig ? { kubeconfig } : {}) },
  };
  // Traffic to the pods of other nodes is not masqueraded (their policies see the pod's address).
  if (o.clusterCidrs.length > 0) plugin.clusterCIDR = o.clusterCidrs;
  // The overlay's MTU rule (docs/multinode.md): large packets with DF set pass without fragmenting.
  if (podMtu !== undefined) plugin.mtu = podMtu;
  return {
    cniVersion: '1.0.0',
    name: 'nhi-cni',
    plugins: [plugin, { type: 'portmap', capabilities: { portMappings: true }, snat: true }, { type: 'bandwidth', capabilities: { bandwidth: true } }],
  };
}

/** Writes the conflist when its content differs from the file's; true when written. */
export function writeConflist(confDir: string, conflist: Record<string, unknown>): boolean {
  const path = join(confDir, CONFLIST_NAME);
  const text = `${JSON.stringify(conflist, null, 2)}\n`;
  try {
    if (readFileSync(path, 'utf8') === text) return false;
  } catch {
    // absent or unreadable: write it
  }
  mkdirSync(confDir, { recursive: true, mode: 0o755 });
  writeFileAtomic(path, text, { mode: 0o644, durable: true });
  return true;
}
