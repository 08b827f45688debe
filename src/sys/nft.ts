// nftables through its JSON input: objects in, one `nft -j -f -` transaction
// out. No ruleset text is ever assembled from strings, so nothing a config or
// a manifest says can become nft syntax.
import { rmSync, writeFileSync } from 'node:fs';
import { run, type ExecResult } from './exec.js';
import { removeStaleTemporaries, tmpName } from './files.js';
import { safeRoot } from './safe-path.js';
import { crashPoint } from './testhooks.js';

export type NftCommand = Record<string, unknown>;

export class NftTransaction {
  readonly commands: NftCommand[] = [];

  push(...c: NftCommand[]): this {
    this.commands.push(...c);
    return this;
  }

  get empty(): boolean {
    return this.commands.length === 0;
  }

  json(): string {
    return JSON.stringify({ nftables: [{ metainfo: { json_schema_version: 1 } }, ...this.commands] });
  }
}

/**
 * nft opens its input file by name, and "/dev/stdin" cannot be opened when
 * stdin is a socket (which is what Node gives a child), so the transaction
 * goes through a private temporary file on tmpfs.
 */
export async function applyNft(t: NftTransaction, tmpDir = process.env.NHI_CNI_RUN_DIR || '/run/nhi-cni'): Promise<ExecResult> {
  safeRoot(tmpDir, 'run dir');
  // Left by a killed ADD: removed by the next transaction.
  removeStaleTemporaries(tmpDir);
  const file = tmpName(tmpDir, 'nft', '.json');
  writeFileSync(file, t.json(), { mode: 0o600 });
  try {
    crashPoint('nft-file');
    return await run('nft', ['-j', '-f', file]);
  } finally {
    rmSync(file, { force: true });
  }
}

export async function listNft(args: string[]): Promise<ExecResult> {
  return run('nft', ['-j', 'list', ...args]);
}

/** One object of a listing (`{set: {...}}`, `{chain: {...}}`, ...), keyed by its kind. */
export type NftObject = Record<string, { name?: string; elem?: unknown[]; packets?: number } | undefined>;

/** The objects of one table (nft JSON), or why it cannot be listed (a missing table, for one). */
export async function listTable(family: string, table: string): Promise<NftObject[] | string> {
  const r = await listNft(['table', family, table]);
  if (r.exitCode !== 0) return r.stderr.trim() || `nft exit status ${r.exitCode}`;
  return (JSON.parse(r.stdout) as { nftables?: NftObject[] }).nftables ?? [];
}
