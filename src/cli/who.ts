// `nhi-cni who <ip>`: which workload held an address, now or at a past moment,
// read from the identity ledger.
import { Command } from 'commander';
import { join } from 'node:path';
import { DEFAULT_STATE_DIR } from '../chain/config.js';
import { readLedger, whoHeld, type LedgerEntry } from '../chain/ledger.js';
import { parseIp } from '../net/ip.js';
import { EXIT, formatOf, outputOption, printRows } from './output.js';

const workload = (e: LedgerEntry) => (e.identity ? `${e.identity.namespace}/${e.identity.name}` : (e.pod ?? '(no workload identity)'));

export function whoCommand(): Command {
  return new Command('who')
    .description('tell which workload held an address (from the identity ledger)')
    .argument('<ip>', 'an IPv4 or IPv6 address')
    .option('--at <time>', 'a moment in the past (ISO 8601, e.g. 2026-11-28T07:30:00Z); default now')
    .option('--state-dir <dir>', 'nhi-cni state directory holding ledger.jsonl', DEFAULT_STATE_DIR)
    .addOption(outputOption())
    .option('--json', 'same as -o json: the ledger entries as JSON lines')
    .addHelpText('after', '\nExit status: 0 someone held it, 1 nobody did, 2 bad input (an address or time that does not parse).')
    .action(async (ip: string, opts: { at?: string; stateDir: string; output: string; json?: boolean }) => {
      const usage = (msg: string) => {
        process.stderr.write(`nhi-cni who: ${msg}\n`);
        process.exitCode = EXIT.usage;
      };
      if (!parseIp(ip)) return usage(`${JSON.stringify(ip)} is not an IPv4 or IPv6 address`);
      const at = opts.at ? new Date(opts.at) : new Date();
      if (Number.isNaN(at.getTime())) return usage(`--at ${JSON.stringify(opts.at)} is not a time; use ISO 8601`);
      const format = formatOf(opts);
      const held = whoHeld(readLedger(join(opts.stateDir, 'ledger.jsonl')), ip, at);
      if (held.length === 0) {
        // Nothing on stdout for a script; the sentence for people.
        if (format === 'table' || format === 'wide') process.stdout.write(`nobody held ${ip} at ${at.toISOString()}\n`);
        process.exitCode = EXIT.none;
        return;
      }
      if (format === 'table') {
        for (const e of held) {
          process.stdout.write(`${ip} at ${at.toISOString()}: ${workload(e)}  container ${e.containerId} ${e.ifname}  network ${e.network}  since ${e.time}\n`);
        }
        return;
      }
      await printRows(held, format, [
        { header: 'WORKLOAD', value: workload },
        { header: 'NETWORK', value: (e) => e.network },
        { header: 'IFNAME', value: (e) => e.ifname },
        { header: 'SINCE', value: (e) => e.time },
        { header: 'NETNS', value: (e) => e.netns ?? '-' },
        { header: 'CONTAINER', value: (e) => e.containerId },
      ]);
    });
}
