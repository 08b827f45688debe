// Plugin type `nhi-cni`: bridge, veth, host-local IPAM and masquerade as one
// chain in one process (see src/chain/runner.ts).
import { parseCniArgs } from '../cni/args.js';
import { loadCniConfig } from '../chain/config.js';
import { builtinIpam, delegatedIpam } from '../chain/ipam/module.js';
import { chainAdd, chainCheck, chainDel, chainGc, chainStatus, isBuiltinIpam, type Chain } from '../chain/runner.js';
import { identityFromConfig } from '../policy/identity.js';
import { loadPoliciesCached, loadPolicyConfig } from '../chain/policy.js';
import type { CniRequest, PluginType } from './request.js';

function chain(req: CniRequest): Chain {
  const args = parseCniArgs(req.env.args, ['IP', 'MAC']);
  const cfg = loadCniConfig(req.config, args.MAC);
  const ipam = isBuiltinIpam(cfg.ipamType) ? builtinIpam(req, args.IP) : delegatedIpam(req, cfg.ipamType);
  const pod = args.K8S_POD_NAMESPACE && args.K8S_POD_NAME ? `${args.K8S_POD_NAMESPACE}/${args.K8S_POD_NAME}` : undefined;
  const c: Chain = pod ? { cfg, ipam, req, pod } : { cfg, ipam, req };
  // The workload identity is read (and validated, before anything is
  // touched) on ADD only: a DEL must never fail on a label.
  const policy = loadPolicyConfig(req.config.policy, cfg.stateDir);
  if (policy) c.policy = policy;
  if (req.env.verb === 'ADD') {
    const identity = identityFromConfig(req.config, { namespace: args.K8S_POD_NAMESPACE, name: args.K8S_POD_NAME });
    if (identity) c.identity = identity;
    // Manifests are read at every ADD, before anything is touched.
      if (policy) c.policies = loadPoliciesCached(policy);
    }
  return c;
}

export const cniPlugin: PluginType = {
  add: (req) => chainAdd(chain(req)),
  del: (req) => chainDel(chain(req)),
  check: (req) => chainCheck(chain(req)),
  gc: (req) => chainGc(chain(req)),
  status: (req) => chainStatus(chain(req)),
};
