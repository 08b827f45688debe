// `nhi-cni agent`: the entry of the agent bundle (dist/agent.cjs, a SEA asset
// loaded only for this command, so @kubernetes/client-node never weighs on a
// CNI ADD). The options arrive parsed and checked (options.ts, by the CLI).
import { configureLog, log, logFromEnv } from '../log.js';
import { Agent } from './agent.js';
import { InformerSet, loadKubeConfig } from './informers.js';
import type { AgentOptions } from './options.js';
import { pluginKubeconfig } from './plugin-kubeconfig.js';
import { defaultSink } from './sink.js';
import type { ClusterSink } from './view.js';

export type { AgentOptions } from './options.js';
export type { ApplyOutcome, ClusterSink, ClusterView } from './view.js';

/** Runs until SIGTERM/SIGINT; resolves with the exit code. */
export async function runAgent(o: AgentOptions, version: string, sink?: ClusterSink): Promise<number> {
  configureLog({ level: 'info', ...logFromEnv(process.env) });
  let kc;
  try {
    kc = loadKubeConfig(o.kubeconfig);
  } catch (e) {
    process.stderr.write(`nhi-cni agent: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  const server = kc.getCurrentCluster()?.server ?? '';
  let agent: Agent | undefined;
  const informers = new InformerSet(kc, { staleAfterMs: o.staleAfterMs, onChange: (k) => agent?.changed(k), log });
  let chosen: ClusterSink;
  try {
    chosen = sink ?? defaultSink(o, log, kc);
  } catch (e) {
    process.stderr.write(`nhi-cni agent: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  agent = new Agent(o, informers, chosen, log, { version, server, pluginKubeconfig: () => pluginKubeconfig(kc) });
  try {
    await agent.listen();
  } catch (e) {
    process.stderr.write(`nhi-cni agent: cannot listen: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  log.info({ node: o.nodeName, server, listen: `${o.listen.host}:${o.listen.port}`, socket: o.socketPath }, 'agent started');
  informers.start();
  const a = agent;
  return new Promise<number>((resolve) => {
    const stop = (sig: string) => {
      log.info({ signal: sig }, 'agent stopping (the conflist stays)');
      // A stop that hangs (a client that never lets go) must not keep a DaemonSet pod terminating.
      const force = setTimeout(() => resolve(0), 5000);
      void a.stop().then(() => {
        clearTimeout(force);
        resolve(0);
      });
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  });
}
