// Plugin type `nhi-policy`: the policy module alone, chained after any main
// plugin (the reference bridge, ptp, ...). It reads the pod's addresses from
// prevResult and passes prevResult through unchanged.
import { parseCniArgs } from '../cni/args.js';
import { CniError, Code } from '../cni/errors.js';
import { checkedPath } from '../cni/paths.js';
import { parsePrevResult, type Result } from '../cni/result.js';
import { keepValid, loadPolicyConfig, placePod, podKey, PolicyEngine } from '../policy/engine/index.js';
import { checkGuard, guardAdd, guardDel, type GuardedPort } from '../chain/spoofcheck.js';
import { isBridge, linkExists, linkMaster } from '../sys/sysfs.js';
import { onPath } from '../sys/exec.js';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { validAttachments } from '../cni/attachments.js';
import { workloadIdentity } from '../policy/identity-source.js';
import { prevResultOf, type CniRequest } from '../cni/request.js';
import type { PluginType } from './request.js';

function policyEngine(req: CniRequest): PolicyEngine {
  const stateDir = checkedPath(typeof req.config.stateDir === 'string' ? req.config.stateDir : DEFAULT_STATE_DIR, 'stateDir');
  // nhi-policy without a policy section enforces an empty set of policies (never undefined for `{}`).
  return new PolicyEngine({ config: loadPolicyConfig(req.config.policy ?? {}, stateDir)! });
}

function prev(req: CniRequest): Result {
  if (req.config.prevResult === undefined) {
    throw new CniError(Code.InvalidConfig, 'nhi-policy must be chained after a main plugin', 'no prevResult: put nhi-policy after the plugin that creates the interface');
  }
  return parsePrevResult(req.config.prevResult, req.version);
}

const key = (req: CniRequest) => podKey(req.config.name, req.env.containerId, req.env.ifname);

/**
 * The pod's port, for its source guard: the node-side interface of
 * prevResult (no sandbox; a bridge port, or a routed veth as ptp makes) and
 * the pod's MAC. The policy trusts source addresses only because of this
 * guard, so a result without them is refused (fail closed).
 */
function portOf(result: Result, ifname: string): GuardedPort {
  const pod = result.interfaces?.find((i) => i.sandbox && i.name === ifname) ?? result.interfaces?.find((i) => i.sandbox);
  const host = (result.interfaces ?? []).filter((i) => !i.sandbox && linkExists(i.name) && !isBridge(i.name));
  const port = host.find((i) => isBridge(linkMaster(i.name) ?? '')) ?? host[0];
  if (!pod?.mac || !port) {
    throw new CniError(Code.InvalidConfig, 'nhi-policy cannot guard the pod\'s source addresses',
      `prevResult must name the pod's interface with its MAC and the node-side interface of a veth pair (${!pod?.mac ? 'no pod MAC' : 'no node-side interface on this node'}); chain nhi-policy after bridge or ptp`);
  }
  const family = isBridge(linkMaster(port.name) ?? '') ? 'bridge' : 'inet';
  return { hostVeth: port.name, mac: pod.mac.toLowerCase(), ips: (result.ips ?? []).map((i) => i.address.split('/')[0]!), level: 'addresses', family };
}

/** The guard a DEL or GC removes: as the state recorded it, else as prevResult says. */
function recordedPort(engine: PolicyEngine, k: string, result: Result | undefined, ifname: string): GuardedPort | undefined {
  // The record is what this plugin stored at ADD (portOf's result).
  const p = engine.state().pods[k]?.port as GuardedPort | undefined;
  if (p) return p;
  try {
    return result ? portOf(result, ifname) : undefined;
  } catch {
    return undefined;
  }
}

export const policyPlugin: PluginType = {
  keys: ['stateDir', 'policy'],
  async add(req) {
    const engine = policyEngine(req);
    const args = parseCniArgs(req.env.args, []);
    const identity = await workloadIdentity(req.config, args);
    const policies = engine.changedPolicies();
    const result = prev(req);
    const port = portOf(result, req.env.ifname);
    const ips = (result.ips ?? []).map((i) => i.address.split('/')[0]!);
    const pod = { network: req.config.name, containerId: req.env.containerId, ifname: req.env.ifname, ips, ...(identity ? { identity } : {}), port };
    await engine.reconcile({ change: (pods) => placePod(pods, key(req), pod), policies, extra: guardAdd(port) });
    return result;
  },
  async del(req) {
    const engine = policyEngine(req);
    // prevResult read leniently: DEL must work without it.
    const result = prevResultOf(req);
    const port = recordedPort(engine, key(req), result, req.env.ifname);
    const ips = (result?.ips ?? []).map((i) => i.address.split('/')[0]!);
    await engine.remove({ key: key(req), ips, extra: port ? guardDel(port) : [] });
  },
  async check(req) {
    const result = prev(req);
    await policyEngine(req).check(key(req));
    await checkGuard(portOf(result, req.env.ifname));
  },
  async gc(req) {
    const valid = validAttachments(req.config);
    if (valid === undefined) return;
    const engine = policyEngine(req);
    // The guards of the pods GC drops: read before the change (adding then deleting is valid whatever happens meanwhile).
    const before = engine.state().pods;
    const kept = { ...before };
    keepValid(kept, req.config.name, valid);
    const unguard = Object.entries(before).filter(([k]) => !(k in kept)).flatMap(([, p]) => (p.port ? guardDel(p.port as GuardedPort) : []));
    await engine.reconcile({ change: (pods) => keepValid(pods, req.config.name, valid), extra: unguard });
  },
  async status() {
    // Ready when nft can be run; the policy state needs nothing else.
    if (!onPath('nft')) throw new CniError(Code.NotAvailable, 'nft is missing', 'install nftables');
  },
};
