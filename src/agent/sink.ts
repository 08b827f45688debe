// The sink the agent hands its views to: EnforcingSink (enforce.ts), which
// applies policies, identities and peers through the policy engine and
// programs the node network. Tests may pass their own (a recorder).
import type { KubeConfig } from '@kubernetes/client-node';
import { enforcingSink, type SinkLog } from './enforce.js';
import type { AgentOptions } from './options.js';
import type { ClusterSink } from './view.js';

export function defaultSink(o: AgentOptions, log: SinkLog, kc?: KubeConfig): ClusterSink {
  return enforcingSink(o, log, kc);
}
