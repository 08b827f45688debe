// Where a workload's identity comes from. In cluster mode (policy.agentSocket,
// written by `nhi-cni agent`): the agent, or when it cannot answer the API
// directly (policy.kubeconfig, which the agent writes) — the API is the
// authority there, and the agent's policies are computed from the same
// identities. Otherwise, in order: the runtime capability
// io.nhi-cni/workload and args.cni.labels (what the runtime says), then the
// Kubernetes API for K8S_POD_NAMESPACE/K8S_POD_NAME when policy.kubeconfig is
// set. The first source that knows the workload wins; none: no identity (the
// pod is then selected by no policy, and reachable only by ipBlocks).
import type { CniArgs } from '../cni/args.js';
import { identityFromConfig } from './identity.js';
import { CniError, Code } from '../cni/errors.js';
import { trace } from '../sys/trace.js';
import { agentSocketOf, identityFromAgent } from './agent-identity.js';
import { identityFromKubernetes } from './k8s.js';
import type { Identity } from './model.js';

export async function workloadIdentity(config: Record<string, unknown>, args: CniArgs): Promise<Identity | undefined> {
  if (agentSocketOf(config) !== undefined) {
    const fallback = hasKubeconfig(config);
    try {
      return await identityFromAgent(config, args, fallback ? { waitMs: 2000, giveUpWhenDown: true } : {});
    } catch (e) {
      // The agent down or behind: the pod read from the API directly (the
      // agent's policies stay as last applied on disk); code 11 only when
      // neither can tell who the pod is.
      if (!fallback || !(e instanceof CniError) || e.code !== Code.TryAgainLater) throw e;
      trace(`agent could not answer (${e.message}); reading the pod from the API`);
      return identityFromKubernetes(config, args);
    }
  }
  return identityFromConfig(config, { namespace: args.K8S_POD_NAMESPACE, name: args.K8S_POD_NAME })
    ?? (await identityFromKubernetes(config, args));
}

function hasKubeconfig(config: Record<string, unknown>): boolean {
  const p = config.policy;
  return p !== null && typeof p === 'object' && typeof (p as Record<string, unknown>).kubeconfig === 'string';
}
