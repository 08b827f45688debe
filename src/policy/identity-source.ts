// Where a workload's identity comes from. In cluster mode (policy.agentSocket,
// written by `nhi-cni agent`): the agent, and nothing else — the API is the
// authority there, and the agent's policies are computed from the same
// identities. Otherwise, in order: the runtime capability
// io.nhi-cni/workload and args.cni.labels (what the runtime says), then the
// Kubernetes API for K8S_POD_NAMESPACE/K8S_POD_NAME when policy.kubeconfig is
// set. The first source that knows the workload wins; none: no identity (the
// pod is then selected by no policy, and reachable only by ipBlocks).
import type { CniArgs } from '../cni/args.js';
import { identityFromConfig } from './identity.js';
import { agentSocketOf, identityFromAgent } from './agent-identity.js';
import { identityFromKubernetes } from './k8s.js';
import type { Identity } from './model.js';

export async function workloadIdentity(config: Record<string, unknown>, args: CniArgs): Promise<Identity | undefined> {
  if (agentSocketOf(config) !== undefined) return identityFromAgent(config, args);
  return identityFromConfig(config, { namespace: args.K8S_POD_NAMESPACE, name: args.K8S_POD_NAME })
    ?? (await identityFromKubernetes(config, args));
}
