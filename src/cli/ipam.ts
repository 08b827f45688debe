// `nhi-cni ipam …`: look at the reservations of a host-local data directory.
import { Command } from 'commander';
import { readdirSync } from 'node:fs';
import { validateNetworkName } from '../cni/config.js';
import { DEFAULT_DATA_DIR } from '../chain/ipam/config.js';
import { DiskStore } from '../chain/ipam/store.js';
import { compare, formatIp } from '../net/ip.js';

export function ipamCommand(): Command {
  const ipam = new Command('ipam').description('inspect host-local IPAM reservations (nhi-ipam and the reference host-local share them)');
  ipam
    .command('ls')
    .description('list reserved addresses and the attachment (container id, interface) holding each')
    .argument('[network]', 'network name; all networks when omitted')
    .option('--data-dir <dir>', 'IPAM data directory', DEFAULT_DATA_DIR)
    .option('--json', 'print JSON lines instead of a table')
    .action((network: string | undefined, opts: { dataDir: string; json?: boolean }) => {
      const networks = network ? [network] : listNetworks(opts.dataDir);
      const rows: { network: string; ip: string; containerId: string; ifname: string }[] = [];
      for (const n of networks) {
        const why = validateNetworkName(n);
        if (why) throw new Error(`invalid network name ${JSON.stringify(n)}: ${why}`);
        const list = new DiskStore(opts.dataDir, n).list().sort((a, b) => compare(a.ip, b.ip));
        for (const r of list) rows.push({ network: n, ip: formatIp(r.ip), containerId: r.owner?.containerId ?? '?', ifname: r.owner?.ifname ?? '' });
      }
      if (opts.json) {
        for (const r of rows) process.stdout.write(`${JSON.stringify(r)}\n`);
        return;
      }
      const w = (k: keyof (typeof rows)[number]) => Math.max(k.length, ...rows.map((r) => r[k].length));
      const line = (r: Record<string, string>) =>
        `${r.network!.padEnd(w('network'))}  ${r.ip!.padEnd(w('ip'))}  ${r.ifname!.padEnd(w('ifname'))}  ${r.containerId}\n`;
      process.stdout.write(line({ network: 'NETWORK', ip: 'ADDRESS', ifname: 'IFNAME', containerId: 'CONTAINER' }));
      for (const r of rows) process.stdout.write(line(r));
    });
  return ipam;
}

function listNetworks(dataDir: string): string[] {
  try {
    return readdirSync(dataDir, { withFileTypes: true }).filter((d) => d.isDirectory() && !validateNetworkName(d.name)).map((d) => d.name).sort();
  } catch {
    return [];
  }
}
