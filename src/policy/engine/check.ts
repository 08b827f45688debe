// CHECK: one pod's policy, as the state says, against what the kernel holds.
import { CniError, Code, firstOf } from '../../cni/errors.js';
import { parseIp } from '../../net/ip.js';
import { classElems, classKey, mapEntries, POLICY_TABLE } from '../compile/index.js';
import type { EngineContext } from './apply.js';
import { STATE_FILE } from './store.js';

/**
 * The pod is in the node's policy state, and the kernel holds what the state
 * says for it - its verdict-map entries, profile chains and set memberships.
 * Catches a table flushed or edited by hand (a firewall reload, `nft flush
 * ruleset`); the next ADD, DEL or `policy sync` restores it.
 */
export async function checkPod({ config, store, kernel }: EngineContext, key: string): Promise<void> {
  const fail = (msg: string, details: string) => new CniError(Code.CheckFailed, msg, details);
  const state = store.read();
  const pod = state.pods[key];
  if (!pod) throw fail('the attachment is missing from the policy state', `no entry ${key} in ${config.stateDir}/${STATE_FILE}`);
  if (!pod.identity) return;
  const e = state.compile?.classIndex[classKey(pod.identity, state.compile.labelKeys)];
  if (!state.compile || !e) throw fail('the pod\'s workload is not in the policy state\'s last compile', `${key}: the next ADD or \`nhi-cni policy sync\` compiles it`);
  const table = await kernel.listPolicyTable();
  const fix = 'the next ADD or DEL, or `nhi-cni policy sync`, re-applies it';
  if (typeof table === 'string') throw fail(`table inet ${POLICY_TABLE} is missing`, `${table}; ${fix}`);
  // Set and map elements as JSON, the form the compiler (src/policy/compile/) gives them.
  const elems = new Map<string, Set<string>>();
  const chains = new Set<string>();
  for (const o of table) {
    const s = o.map ?? o.set;
    if (s?.name) elems.set(s.name, new Set((s.elem ?? []).map((x) => JSON.stringify(x))));
    if (o.chain?.name) chains.add(o.chain.name);
  }
  const missing: string[] = [];
  for (const ip of pod.ips.filter((a) => parseIp(a) !== undefined)) {
    for (const [map, chain] of mapEntries(e, ip)) {
      if (!chains.has(chain)) missing.push(`chain ${chain}`);
      if (!elems.get(map)?.has(JSON.stringify([ip, { jump: { target: chain } }]))) missing.push(`${map} ${ip} -> ${chain}`);
    }
    for (const [name, elem] of classElems(e, ip)) if (!elems.get(name)?.has(elem)) missing.push(`set ${name} ${elem}`);
  }
  for (const [name, elem] of state.compile.podElems[key] ?? []) if (!elems.get(name)?.has(elem)) missing.push(`set ${name} ${elem}`);
  if (missing.length) throw fail('the pod\'s policy is not in the kernel as the policy state says', `${key}: missing ${firstOf(missing)}; ${fix}`);
}
