// Plugin type `nhi-cni`: bridge, veth, host-local IPAM and masquerade as one
// chain in one process (see src/chain/runner.ts).
import { parseCniArgs } from '../cni/args.js';
import { CniError, Code } from '../cni/errors.js';
import { ipSafe } from '../sys/ip.js';
import { loadCniConfig } from '../chain/config.js';
import { builtinIpam, delegatedIpam } from '../chain/ipam/module.js';
import { chainAdd, chainCheck, chainDel, chainGc, chainStatus, isBuiltinIpam, type Chain } from '../chain/runner.js';
import { workloadIdentity } from '../policy/identity-source.js';
import { loadPoliciesCached, loadPolicyConfig } from '../chain/policy.js';
import { trace } from '../sys/trace.js';
import type { CniRequest, PluginType } from './request.js';

async function chain(req: CniRequest): Promise<Chain> {
  const args = parseCniArgs(req.env.args, ['IP', 'MAC']);
  const cfg = loadCniConfig(req.config, args.MAC);
  // The kernel takes any name without "/", ":" or whitespace, but the chain
  // hands the pod's interface and the bridge to `ip -batch`, which takes
  // fewer characters: refused here, before IPAM reserves anything (a fuzz
  // finding: "ßtraße" used to fail after the policy state was written).
  if (req.env.verb === 'ADD' || req.env.verb === 'CHECK') {
    const hint = 'names the chain passes to ip hold only letters, digits and _ . : / @ + , % = -';
    if (!ipSafe(req.env.ifname)) throw new CniError(Code.InvalidEnv, `CNI_IFNAME ${JSON.stringify(req.env.ifname)} cannot be passed to ip`, hint);
    if (!ipSafe(cfg.bridge)) throw new CniError(Code.InvalidConfig, `bridge name ${JSON.stringify(cfg.bridge)} cannot be passed to ip`, hint);
  }
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

export const cniPlugin: PluginType = {
  add: async (req) => chainAdd(await chain(req)),
  del: async (req) => chainDel(await chain(req)),
  check: async (req) => chainCheck(await chain(req)),
  gc: async (req) => chainGc(await chain(req)),
  status: async (req) => chainStatus(await chain(req)),
};
