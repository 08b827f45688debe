// The chain's policy module: the pod joins the node's policy state in the
// ADD's own nft transaction (so its policy is in place before its interface
// comes up) and leaves it in DEL's. The engine itself is src/policy/engine.
import { keepValid, placePod, podKey } from '../policy/engine/index.js';
import { addedIps, type ChainModule } from './module.js';

export const policy: ChainModule = {
  name: 'policy',
  add(x, plan) {
    const { c } = x;
    if (!c.policy) return;
    const { config, env } = c.req;
    const pod = {
      network: config.name, containerId: env.containerId, ifname: env.ifname,
      ips: addedIps(x).map((i) => i.address.split('/')[0]!),
      ...(c.identity ? { identity: c.identity } : {}),
    };
    plan.policy.changes.push((pods) => placePod(pods, podKey(config.name, env.containerId, env.ifname), pod));
    if (c.policies) plan.policy.policies = c.policies;
  },
  del(t, plan) {
    if (!t.nft) return;
    const key = podKey(t.c.req.config.name, t.containerId, t.ifname);
    plan.policy.changes.push((pods) => delete pods[key]);
    (plan.policy.forget ??= []).push(...t.ips.map((i) => i.split('/')[0]!));
  },
  async check({ c }) {
    const { config, env } = c.req;
    if (c.policy) await c.policy.check(podKey(config.name, env.containerId, env.ifname));
  },
  gc({ c, valid }, plan) {
    if (valid !== undefined) plan.policy.changes.push((pods) => keepValid(pods, c.req.config.name, valid));
  },
};
