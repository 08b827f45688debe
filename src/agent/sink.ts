// The sink the agent hands its views to until the engine and the node network
// are wired in (the lead's part: src/policy/engine/ and src/agent/network/).
// It enforces nothing: it accepts every view and logs what it holds, so the
// agent's API side, readiness and conflist work, and `nhi-cni status` shows
// what the engine will get. Replace it in defaultSink().
import type { AgentOptions } from './options.js';
import type { ApplyOutcome, ClusterSink, ClusterView } from './view.js';

export class ObservingSink implements ClusterSink {
  constructor(private readonly log: { info(o: object, m: string): void }) {}

  async apply(view: ClusterView): Promise<ApplyOutcome> {
    this.log.info({ pods: view.pods.length, policies: view.policies.length, nodes: view.nodes.length, refused: view.refused.length }, 'cluster view received (no engine wired yet: nothing enforced)');
    return { ok: true };
  }
}

export function defaultSink(_o: AgentOptions, log: { info(o: object, m: string): void }): ClusterSink {
  return new ObservingSink(log);
}
