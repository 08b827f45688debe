// Which connections must go through the L7 proxy: the (pod, port) pairs an
// HTTP rule covers, from the policies and this node's pods. Pure: what the
// agent turns into listeners (L7Proxy.listen) and into the nft redirect that
// takes those connections there (docs/l7.md). Everything else keeps the
// kernel-only path.
import type { LocalPod } from '../policy/compile/types.js';
import { evaluate, type Endpoint } from '../policy/evaluate.js';
import { policyId, type Identity, type Policy } from '../policy/model.js';
import { selects } from '../policy/selector.js';

/** Connections to `ip`:`port` (TCP) of a pod of this node, which an ingress HTTP rule covers. */
export interface IngressTarget {
  /** LocalPod.id. */
  pod: string;
  ip: string;
  port: number;
  /** The policies whose HTTP rules cover it (for messages and status). */
  policies: string[];
}

/** Connections from `ip` (a pod of this node) to TCP `port` of some peer, which an egress HTTP rule covers. */
export interface EgressTarget {
  pod: string;
  ip: string;
  /** A number, or a port name resolved on each destination (the redirect needs the peer's numbers). */
  port: number | string;
  policies: string[];
}

const key = (...parts: (string | number)[]) => parts.join('\0');

/**
 * The pairs to redirect, sorted. A port is covered when some policy that
 * selects the pod has an allow rule with HTTP rules on it, whatever other
 * rules allow: every connection to that port then goes through the proxy,
 * which also applies the L4-only rules (their peers get every request, as in
 * Cilium). Remote pods are not ours to redirect.
 */
export function l7Targets(policies: Policy[], pods: LocalPod[]): { ingress: IngressTarget[]; egress: EgressTarget[] } {
  const ingress = new Map<string, IngressTarget>();
  const egress = new Map<string, EgressTarget>();
  for (const pod of pods) {
    const id = pod.identity;
    if (pod.remote || !id) continue;
    for (const p of policies) {
      if (p.namespace !== id.namespace || !selects(p.subject, id.labels)) continue;
      const pid = policyId(p);
      for (const r of p.ingress) {
        for (const pr of r.ports ?? []) {
          if (!pr.http || pr.port === undefined) continue;
          // A named port resolves on this pod (the destination); a pod without it has nothing to redirect.
          const port = typeof pr.port === 'number' ? pr.port : id.ports.find((x) => x.name === pr.port && x.protocol === 'TCP')?.containerPort;
          if (port === undefined) continue;
          for (const ip of pod.ips) {
            const k = key(pod.id, ip, port);
            const t = ingress.get(k) ?? { pod: pod.id, ip, port, policies: [] };
            if (!t.policies.includes(pid)) t.policies.push(pid);
            ingress.set(k, t);
          }
        }
      }
      for (const r of p.egress) {
        for (const pr of r.ports ?? []) {
          if (!pr.http || pr.port === undefined) continue;
          for (const ip of pod.ips) {
            const k = key(pod.id, ip, pr.port);
            const t = egress.get(k) ?? { pod: pod.id, ip, port: pr.port, policies: [] };
            if (!t.policies.includes(pid)) t.policies.push(pid);
            egress.set(k, t);
          }
        }
      }
    }
  }
  const order = (a: { pod: string; ip: string; port: number | string }, b: typeof a) =>
    a.pod.localeCompare(b.pod) || a.ip.localeCompare(b.ip) || String(a.port).localeCompare(String(b.port), undefined, { numeric: true });
  const sorted = <T extends { pod: string; ip: string; port: number | string; policies: string[] }>(m: Map<string, T>) =>
    [...m.values()].map((t) => ({ ...t, policies: [...t.policies].sort() })).sort(order);
  return { ingress: sorted(ingress), egress: sorted(egress) };
}

/** A pod of this node (`src`) whose own egress HTTP rules may allow requests to `ip`:`port`, a pod anywhere. */
export interface ServiceEgressTarget {
  src: string;
  ip: string;
  port: number;
}

/**
 * The Service path of egress HTTP rules: a connection of `src` to a Service
 * address is DNATed by kube-proxy before any redirect of ours can take it,
 * and then has only its backend's address. For each egress target (a local
 * pod and a port its own HTTP rules cover), the pods some HTTP clause could
 * allow it to reach on that port, and which its L3/L4 rules alone do not
 * (those keep the kernel path): the proxy listens on their addresses for it.
 * Sorted; `pods` are every pod of the cluster with its identity.
 */
export function serviceEgressTargets(policies: Policy[], egress: { ip: string; port: number }[], pods: { ip: string; identity?: Identity }[]): ServiceEgressTarget[] {
  const identity = new Map(pods.map((p) => [p.ip, p.identity] as const));
  const out = new Map<string, ServiceEgressTarget>();
  for (const e of egress) {
    const srcId = identity.get(e.ip);
    if (!srcId) continue;
    const src: Endpoint = { ip: e.ip, identity: srcId };
    for (const p of pods) {
      if (!p.identity || p.ip === e.ip || p.ip.includes(':') !== e.ip.includes(':')) continue;
      const dst: Endpoint = { ip: p.ip, identity: p.identity };
      if (evaluate(policies, src, dst, e.port, 'TCP').allowed) continue;
      if (!evaluate(policies, src, dst, e.port, 'TCP', { http: () => true }).allowed) continue;
      out.set(`${e.ip}|${p.ip}|${e.port}`, { src: e.ip, ip: p.ip, port: e.port });
    }
  }
  return [...out.values()].sort((a, b) => a.src.localeCompare(b.src) || a.ip.localeCompare(b.ip) || a.port - b.port);
}
