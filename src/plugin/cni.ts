// Plugin type `nhi-cni`: bridge, veth, host-local IPAM and masquerade as one
// chain in one process (see src/chain/runner.ts).
import { parseCniArgs } from '../cni/args.js';
import { CniError, Code } from '../cni/errors.js';
import { ipSafe } from '../sys/ip.js';
import { CniConfigInput, loadCniConfig, runDir, type CniConfig } from '../chain/config.js';
import { builtinIpam, delegatedIpam } from '../chain/ipam/module.js';
import { chainAdd, chainCheck, chainDel, chainGc, chainStatus, isBuiltinIpam, type Chain } from '../chain/runner.js';
import { workloadIdentity } from '../policy/identity-source.js';
import { loadPolicyConfig, PolicyEngine } from '../policy/engine/index.js';
import { checkLedger } from '../chain/ledger.js';
import { AttachmentStore } from '../chain/state.js';
import { safeRoot } from '../sys/safe-path.js';
import { trace } from '../sys/trace.js';
import type { CniRequest } from '../cni/request.js';
import type { PluginType } from './request.js';

/** The chain of one request, validated; `loaded` is its config when the caller already loaded it. */
async function chain(req: CniRequest, loaded?: CniConfig): Promise<Chain> {
  const args = parseCniArgs(req.env.args, ['IP', 'MAC']);
  const cfg = loaded ?? loadCniConfig(req.config, args.MAC);
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
  if (policy) {
    // The policy decides on source addresses: without the port guard a pod could borrow another's.
    if (cfg.guard !== 'addresses') {
      throw new CniError(Code.InvalidConfig, '"spoofcheck": false cannot be combined with a "policy" section',
        'the policy identifies pods by their source addresses, which only the spoof check makes trustworthy; remove "spoofcheck": false');
    }
    c.policy = new PolicyEngine({ config: policy });
  }
  // The workload identity and the manifests are read (and validated, before
  // anything is touched) on ADD only: a DEL must never fail on a label.
  if (req.env.verb === 'ADD') {
    trace('config read');
    const identity = await workloadIdentity(req.config, args);
    if (identity) c.identity = identity;
    trace('identity read');
    if (c.policy) {
      c.policies = c.policy.changedPolicies();
      trace('policies loaded');
    }
    // Our directories are checked before IPAM or the kernel is touched: a
    // symbolic link where nhi-cni writes is refused (code 7), not followed.
    new AttachmentStore(cfg.stateDir, req.config.name).ensureDir();
    checkLedger(cfg.stateDir);
    safeRoot(runDir(), 'run dir');
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
  // Everything is validated (and the identity read) before the lock: a refused call leaves no lock file.
  const c = await chain(req, cfg);
  const lock = await store.lock(containerId, ifname);
  try {
    return await fn(c);
  } finally {
    if (store.read(containerId, ifname)) lock.release();
    else lock.releaseAndRemove();
  }
}

export const cniPlugin: PluginType = {
  keys: [...Object.keys(CniConfigInput.shape), 'policy'],
  add: async (req) => owned(req, chainAdd),
  del: async (req) => owned(req, chainDel),
  check: async (req) => owned(req, chainCheck),
  gc: async (req) => chainGc(await chain(req)),
  status: async (req) => chainStatus(await chain(req)),
};
