// Plugin type `nhi-policy`: the policy module alone, chained after any main
// plugin (the reference bridge, ptp, ...). It reads the pod's addresses from
// prevResult and passes prevResult through unchanged.
import { parseCniArgs } from '../cni/args.js';
import { CniError, Code } from '../cni/errors.js';
import { checkedPath } from '../cni/paths.js';
import { parsePrevResult, type Result } from '../cni/result.js';
import { applyPolicy, checkPolicy, keepValid, loadPoliciesCached, loadPolicyConfig, placePod, podKey, type PolicyConfig } from '../chain/policy.js';
import { onPath } from '../sys/exec.js';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { validAttachments } from './attachments.js';
import { workloadIdentity } from '../policy/identity-source.js';
import type { CniRequest, PluginType } from './request.js';

function policyConfig(req: CniRequest): PolicyConfig {
  const stateDir = checkedPath(typeof req.config.stateDir === 'string' ? req.config.stateDir : DEFAULT_STATE_DIR, 'stateDir');
  const pc = loadPolicyConfig(req.config.policy ?? {}, stateDir);
  return pc!;
}

function prev(req: CniRequest): Result {
  if (req.config.prevResult === undefined) {
    throw new CniError(Code.InvalidConfig, 'nhi-policy must be chained after a main plugin', 'no prevResult: put nhi-policy after the plugin that creates the interface');
  }
  return parsePrevResult(req.config.prevResult, req.version);
}

const key = (req: CniRequest) => podKey(req.config.name, req.env.containerId, req.env.ifname);

export const policyPlugin: PluginType = {
  async add(req) {
    const pc = policyConfig(req);
    const args = parseCniArgs(req.env.args, []);
    const identity = await workloadIdentity(req.config, args);
    const policies = loadPoliciesCached(pc);
    const result = prev(req);
    const ips = (result.ips ?? []).map((i) => i.address.split('/')[0]!);
    const pod = { network: req.config.name, containerId: req.env.containerId, ifname: req.env.ifname, ips, ...(identity ? { identity } : {}) };
    await applyPolicy(pc, (pods) => placePod(pods, key(req), pod), policies);
    return result;
  },
  async del(req) {
    await applyPolicy(policyConfig(req), (pods) => delete pods[key(req)], undefined);
  },
  async check(req) {
    prev(req);
    await checkPolicy(policyConfig(req), key(req));
  },
  async gc(req) {
    const valid = validAttachments(req.config);
    if (valid === undefined) return;
    await applyPolicy(policyConfig(req), (pods) => keepValid(pods, req.config.name, valid), undefined);
  },
  async status() {
    // Ready when nft can be run; the policy state needs nothing else.
    if (!onPath('nft')) throw new CniError(Code.NotAvailable, 'nft is missing', 'install nftables');
  },
};
