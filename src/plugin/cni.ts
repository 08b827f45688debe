// Plugin type `nhi-cni`: bridge, veth, host-local IPAM and masquerade as one
// chain in one process (see src/chain/runner.ts).
import { parseCniArgs } from '../cni/args.js';
import { loadCniConfig } from '../chain/config.js';
import { builtinIpam, delegatedIpam } from '../chain/ipam/module.js';
import { chainAdd, chainCheck, chainDel, chainGc, chainStatus, isBuiltinIpam, type Chain } from '../chain/runner.js';
import { workloadIdentity } from '../policy/identity-source.js';
import { loadPoliciesCached, loadPolicyConfig } from '../chain/policy.js';
import { trace } from '../sys/trace.js';
import { AttachmentStore } from '../chain/state.js';
import type { CniRequest, PluginType } from './request.js';

async function chain(req: CniRequest, cfg = loadCniConfig(req.config, parseCniArgs(req.env.args, ['IP', 'MAC']).MAC)): Promise<Chain> {
  const args = parseCniArgs(req.env.args, ['IP', 'MAC']);
  const ipam = isBuiltinIpam(cfg.ipamType) ? builtinIpam(req, args.IP) : delegatedIpam(req, cfg.ipamType);
  const pod = args.K8S_POD_NAMESPACE && args.K8S_POD_NAME ? `${args.K8S_POD_NAMESPACE}/${args.K8S_POD_NAME}` : undefined;
  const c: Chain = pod ? { cfg, ipam, req, pod } : { cfg, ipam, req };
  const policy = loadPolicyConfig(req.config.policy, cfg.stateDir);
  if (policy) c.policy = policy;
  // The workload identity and the manifests are read (and validated, before
  // anything is touched) on ADD only: a DEL must never fail on a label.
  if (req.env.verb === 'ADD') {
    const identity = await workloadIdentity(req.config, args);
    if (identity) c.identity = identity;
    trace('identity read');
    if (policy) {
      c.policies = loadPoliciesCached(policy);
      trace('policies loaded');
    }
  }
  return c;
}

/**
 * Runs a verb of one attachment holding its lock (AttachmentStore.lock),
 * taken before anything else is read or touched. The lock file goes with the
 * attachment: removed (still held) once no record is left.
 */
async function owned<T>(req: CniRequest, fn: (c: Chain) => Promise<T>): Promise<T> {
  const cfg = loadCniConfig(req.config, parseCniArgs(req.env.args, ['IP', 'MAC']).MAC);
  const store = new AttachmentStore(cfg.stateDir, req.config.name);
  const { containerId, ifname } = req.env;
  const lock = await store.lock(containerId, ifname);
  try {
    return await fn(await chain(req, cfg));
  } finally {
    if (store.read(containerId, ifname)) lock.release();
    else lock.releaseAndRemove();
  }
}

export const cniPlugin: PluginType = {
  add: async (req) => owned(req, chainAdd),
  del: async (req) => owned(req, chainDel),
  check: async (req) => owned(req, chainCheck),
  gc: async (req) => chainGc(await chain(req)),
  status: async (req) => chainStatus(await chain(req)),
};
