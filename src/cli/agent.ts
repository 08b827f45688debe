// `nhi-cni agent`: flags and their environment variables are parsed and
// checked here (src/agent/options.ts, no Kubernetes library); only then is the
// agent bundle loaded (src/lazy.ts), so the CNI path never carries it.
import { Command, Option } from 'commander';
import { AGENT_FLAGS, agentOptions, OptionError, type RawAgentOptions } from '../agent/options.js';
import { loadBundle } from '../lazy.js';

export function agentCommand(version: string): Command {
  const cmd = new Command('agent')
    .description('the node agent (the DaemonSet\'s main container): watches pods, namespaces, nodes and policies in the Kubernetes API, hands the engine one view per burst of changes, writes the conflist once ready, serves /metrics /healthz /readyz')
    .addHelpText('after', '\nEvery flag can also be set by the environment variable shown; a flag wins over its variable.\nnhi-cni status asks a running agent (its socket is <state-dir>/agent.sock).');
  for (const f of AGENT_FLAGS) {
    cmd.addOption(new Option(f.flags, `${f.help}${f.default !== undefined ? ` (default: ${f.default})` : ''}`).env(f.env));
  }
  cmd.action(async (raw: RawAgentOptions) => {
    let opts;
    try {
      opts = agentOptions(raw, process.env);
    } catch (e) {
      if (!(e instanceof OptionError)) throw e;
      process.stderr.write(`nhi-cni agent: ${e.message}\n`);
      process.exitCode = 2;
      return;
    }
    const { runAgent } = await loadBundle('agent');
    // Exited explicitly: what the agent ran (watch streams, proxy upstreams) is stopped by then, and nothing may keep a stopping agent alive.
    process.exit(await runAgent(opts, version));
  });
  return cmd;
}
