// `nhi-cni who <ip>`: which workload held an address, now or at a past moment,
// read from the identity ledger.
import { Command } from 'commander';
import { join } from 'node:path';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { readLedger, whoHeld } from '../chain/ledger.js';

export function whoCommand(): Command {
  return new Command('who')
    .description('tell which workload held an address (from the identity ledger)')
    .argument('<ip>', 'an IPv4 or IPv6 address')
    .option('--at <time>', 'a moment in the past (ISO 8601, e.g. 2026-11-28T07:30:00Z); default now')
    .option('--state-dir <dir>', 'nhi-cni state directory holding ledger.jsonl', DEFAULT_STATE_DIR)
    .option('--json', 'print the ledger entries as JSON lines')
    .action((ip: string, opts: { at?: string; stateDir: string; json?: boolean }) => {
      const at = opts.at ? new Date(opts.at) : new Date();
      if (Number.isNaN(at.getTime())) throw new Error(`--at ${JSON.stringify(opts.at)} is not a time; use ISO 8601`);
      const held = whoHeld(readLedger(join(opts.stateDir, 'ledger.jsonl')), ip, at);
      if (opts.json) {
        for (const e of held) process.stdout.write(`${JSON.stringify(e)}\n`);
        return;
      }
      if (held.length === 0) {
        process.stdout.write(`nobody held ${ip} at ${at.toISOString()}\n`);
        process.exitCode = 1;
        return;
      }
      for (const e of held) {
        const who = e.identity ? `${e.identity.namespace}/${e.identity.name}` : (e.pod ?? '(no workload identity)');
        process.stdout.write(`${ip} at ${at.toISOString()}: ${who}  container ${e.containerId} ${e.ifname}  network ${e.network}  since ${e.time}\n`);
      }
    });
}
