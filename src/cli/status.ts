// `nhi-cni status`: asks the running agent over its unix socket
// (<state-dir>/agent.sock, mode 0600: root only, nothing on the network, and
// no port to guess when --listen was changed) and prints what it knows.
import { Command } from 'commander';
import { askAgent } from './agent-socket.js';
import { formatOf, outputOption, printDocument } from './output.js';
import type { AgentStatus } from '../agent/agent.js';
import { DEFAULT_STATE_DIR } from '../agent/options.js';
import { absolutePathProblem } from '../cni/paths.js';

const ask = async (socketPath: string, timeoutMs: number) => (await askAgent(socketPath, '/status', timeoutMs)) as AgentStatus;

const age = (s: number | null) => (s === null ? 'never' : `${s}s ago`);

function table(s: AgentStatus): string {
  const lines = [
    `agent:      up (pid ${s.agent.pid}, ${s.agent.uptimeSeconds}s), node ${s.agent.nodeName}, ${s.agent.ready ? 'ready' : 'NOT READY'}`,
    `api:        ${s.api.server} — ${s.api.synced ? 'synced' : 'not synced yet'}${s.api.stale.length ? `, STALE: ${s.api.stale.join(', ')}` : ''}`,
  ];
  for (const [k, v] of Object.entries(s.api.kinds)) {
    lines.push(`  ${k.padEnd(22)} ${v.absent ? 'not served (CRD missing)' : `${v.objects} objects`}, last contact ${age(v.lastContactAgeSeconds)}, ${v.restarts} restarts${v.lastError ? `, last error: ${v.lastError}` : ''}`);
  }
  lines.push(
    `last sync:  ${age(s.sync.lastApplyAgeSeconds)} (${s.sync.applies} applied${s.sync.pending ? ', changes pending' : ''})${s.sync.lastError ? `, last error: ${s.sync.lastError}` : ''}`,
    `pod CIDRs:  ${s.node.podCIDRs.join(', ') || '(none yet)'}${s.node.conflist ? ` — ${s.node.conflist}` : ''}`,
    `pods:       ${s.pods.local} local, ${s.pods.remote} remote`,
    `policies:   ${s.policies.NetworkPolicy} NetworkPolicy, ${s.policies.CiliumNetworkPolicy} CiliumNetworkPolicy${s.policies.ciliumPoliciesServed ? '' : ' (CRD not installed)'}`,
    `refused:    ${s.refused.length}`,
  );
  for (const r of s.refused) lines.push(`  ${r.kind} ${r.namespace ? `${r.namespace}/` : ''}${r.name}: ${r.reason}`);
  return `${lines.join('\n')}\n`;
}

export function statusCommand(): Command {
  return new Command('status')
    .description('what the running agent knows: API connection, last sync, node pod CIDRs, pods and policies, refused objects')
    .option('--state-dir <dir>', 'the agent\'s state directory (its socket is <dir>/agent.sock)', process.env.NHI_CNI_STATE_DIR || DEFAULT_STATE_DIR)
    .addOption(outputOption())
    .option('--json', 'same as -o json')
    .addHelpText('after', '\nExit status: 0 the agent answered, 1 it did not (down), 2 bad input.')
    .action(async (o: { stateDir: string; output: string; json?: boolean }) => {
      const format = formatOf(o);
      const why = absolutePathProblem(o.stateDir);
      if (why) {
        process.stderr.write(`nhi-cni status: --state-dir ${JSON.stringify(o.stateDir)} ${why}\n`);
        process.exitCode = 2;
        return;
      }
      const sock = `${o.stateDir.replace(/\/+$/, '')}/agent.sock`;
      let s: AgentStatus;
      try {
        s = await ask(sock, 3000);
      } catch (e) {
        const code = (e as NodeJS.ErrnoException).code;
        const hint = code === 'ENOENT' || code === 'ECONNREFUSED' ? ' (is `nhi-cni agent` running with this --state-dir?)' : code === 'EACCES' ? ' (the socket is root only)' : '';
        process.stderr.write(`nhi-cni status: agent down: no answer on ${sock}: ${code ?? (e instanceof Error ? e.message : String(e))}${hint}\n`);
        process.exitCode = 1;
        return;
      }
      if (format === 'json' || format === 'yaml') return printDocument(s, format);
      process.stdout.write(table(s));
    });
}
