// Kubernetes NetworkPolicy (networking.k8s.io/v1) -> the policy model, with
// the API server's validation and defaulting. Pure.
import * as z from '../../cni/zod.js';
import type { Peer, Policy, PortRule, Rule } from '../model.js';
import { check, cidrPeer, Doc, LabelSelector, labelSelector, metadata, type Path, portName, portNumber } from './common.js';

// ---- NetworkPolicy (networking.k8s.io/v1) ----

export const NpPort = z.strictObject({
  protocol: z.nullish(z.enum(['TCP', 'UDP', 'SCTP'])),
  port: z.optional(z.unknown()),
  endPort: z.optional(z.unknown()),
});
export const NpPeer = z.strictObject({
  podSelector: z.nullish(LabelSelector),
  namespaceSelector: z.nullish(LabelSelector),
  ipBlock: z.nullish(z.strictObject({ cidr: z.string(), except: z.nullish(z.array(z.string())) })),
});
export const NpIngress = z.strictObject({ from: z.nullish(z.array(NpPeer)), ports: z.nullish(z.array(NpPort)) });
export const NpEgress = z.strictObject({ to: z.nullish(z.array(NpPeer)), ports: z.nullish(z.array(NpPort)) });
export const NpSpec = z.strictObject({
  podSelector: LabelSelector,
  policyTypes: z.nullish(z.array(z.enum(['Ingress', 'Egress']))),
  ingress: z.nullish(z.array(NpIngress)),
  egress: z.nullish(z.array(NpEgress)),
});

export function npPeer(p: z.infer<typeof NpPeer>, doc: Doc, path: Path): Peer {
  if (p.ipBlock) {
    if (p.podSelector || p.namespaceSelector) {
      doc.fail(path, 'ipBlock cannot be combined with podSelector or namespaceSelector');
    }
    const at = [...path, 'ipBlock'];
    return cidrPeer(p.ipBlock.cidr, p.ipBlock.except ?? [], doc, [...at, 'cidr'], [...at, 'except'], false);
  }
  if (!p.podSelector && !p.namespaceSelector) {
    doc.fail(path, 'a peer must set podSelector and/or namespaceSelector, or ipBlock');
  }
  const peer: Peer = { kind: 'pods' };
  if (p.podSelector) peer.pods = labelSelector(p.podSelector, doc, [...path, 'podSelector']).pods;
  if (p.namespaceSelector) peer.namespaces = labelSelector(p.namespaceSelector, doc, [...path, 'namespaceSelector']).pods;
  return peer;
}

export function npPort(p: z.infer<typeof NpPort>, doc: Doc, path: Path): PortRule {
  const out: PortRule = { protocol: p.protocol ?? 'TCP' };
  if (p.port !== undefined && p.port !== null) {
    out.port = typeof p.port === 'string' ? portName(p.port, doc, [...path, 'port']) : portNumber(p.port, doc, [...path, 'port'], 1);
  }
  if (p.endPort !== undefined && p.endPort !== null) {
    if (typeof out.port !== 'number') {
      doc.fail([...path, 'endPort'], out.port === undefined ? 'endPort needs a port' : 'endPort needs a numeric port, not a named one');
    }
    const end = portNumber(p.endPort, doc, [...path, 'endPort'], 1);
    if (end < out.port) doc.fail([...path, 'endPort'], `must be greater than or equal to port ${out.port}`);
    out.endPort = end;
  }
  return out;
}

export type NpRuleIn = { ports?: z.infer<typeof NpPort>[] | null } & { [k in 'from' | 'to']?: z.infer<typeof NpPeer>[] | null };

export function npRule(r: NpRuleIn, key: 'from' | 'to', doc: Doc, path: Path): Rule {
  const rule: Rule = {};
  const peers = r[key] ?? [];
  // Absent or empty `from`/`to`: every peer; absent or empty `ports`: every port.
  if (peers.length > 0) rule.peers = peers.map((p, i) => npPeer(p, doc, [...path, key, i]));
  if (r.ports && r.ports.length > 0) rule.ports = r.ports.map((p, i) => npPort(p, doc, [...path, 'ports', i]));
  return rule;
}

export function networkPolicy(obj: Record<string, unknown>, doc: Doc): Policy {
  const { namespace, name } = metadata(obj, doc);
  const spec = check(NpSpec, obj.spec, doc, ['spec']);
  const subject = labelSelector(spec.podSelector, doc, ['spec', 'podSelector']).pods;
  const types = spec.policyTypes ?? [];
  if (types.length > 2) doc.fail(['spec', 'policyTypes'], 'may not list more than two policy types');
  // The API server's defaulting: no policyTypes → Ingress, plus Egress when egress rules exist.
  const isolates = types.length > 0
    ? { ingress: types.includes('Ingress'), egress: types.includes('Egress') }
    : { ingress: true, egress: (spec.egress?.length ?? 0) > 0 };
  const ingress = (spec.ingress ?? []).map((r, i) => npRule(r, 'from', doc, ['spec', 'ingress', i]));
  const egress = (spec.egress ?? []).map((r, i) => npRule(r, 'to', doc, ['spec', 'egress', i]));
  return {
    kind: 'NetworkPolicy',
    namespace,
    name,
    subject,
    isolates,
    // Rules of a direction the policy does not isolate are ignored, as by every implementation.
    ingress: isolates.ingress ? ingress : [],
    egress: isolates.egress ? egress : [],
    ingressDeny: [],
    egressDeny: [],
    source: { file: doc.file, index: doc.index },
  };
}

