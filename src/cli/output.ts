// `-o table|json|yaml|wide` for the commands that list things, kubectl's
// spelling: table (the default) for people; wide adds columns; json prints
// one JSON object per row (JSON Lines, as `--json` always did, so `jq` and a
// line-reading loop both take it); yaml one YAML list. `--json` stays as an
// alias of `-o json`.
import { Option } from 'commander';
import { loadBundle } from '../lazy.js';

export const FORMATS = ['table', 'wide', 'json', 'yaml'] as const;
export type Format = (typeof FORMATS)[number];

/** Exit statuses of the command line (docs/cli.md): 0 found / ok, 1 not found / denied / findings, 2 usage or error. */
export const EXIT = { ok: 0, none: 1, usage: 2 } as const;

export function outputOption(formats: readonly Format[] = FORMATS): Option {
  return new Option('-o, --output <format>', 'output format').choices([...formats]).default('table');
}

/** The format asked for; `--json` is `-o json`. */
export function formatOf(opts: { output?: string; json?: boolean }): Format {
  if (opts.json) return 'json';
  return (opts.output ?? 'table') as Format;
}

export interface Column<R> {
  header: string;
  value: (r: R) => string;
  /** Only with -o wide. */
  wide?: boolean;
}

export function table<R>(rows: R[], columns: Column<R>[], wide: boolean): string {
  const cols = columns.filter((c) => wide || !c.wide);
  const cells = rows.map((r) => cols.map((c) => oneLine(c.value(r))));
  const widths = cols.map((c, i) => Math.max(c.header.length, ...cells.map((row) => row[i]!.length)));
  const line = (row: string[]) => `${row.map((v, i) => (i === row.length - 1 ? v : v.padEnd(widths[i]!))).join('  ')}\n`;
  return line(cols.map((c) => c.header)) + cells.map(line).join('');
}

/** A value printed in a table cell: a terminal escape or a newline in it must not reshape the screen. */
function oneLine(s: string): string {
  return s.replace(/[\u0000-\u001f\u007f]/g, '?');
}

/** Prints rows in the format; `json` and `yaml` print `data(row)` (the row itself by default). */
export async function printRows<R>(rows: R[], format: Format, columns: Column<R>[], data: (r: R) => unknown = (r) => r): Promise<void> {
  process.stdout.write(await render(rows, format, columns, data));
}

export async function render<R>(rows: R[], format: Format, columns: Column<R>[], data: (r: R) => unknown = (r) => r): Promise<string> {
  switch (format) {
    case 'json':
      return rows.map((r) => `${JSON.stringify(data(r))}\n`).join('');
    case 'yaml':
      return await yaml(rows.map(data));
    default:
      return table(rows, columns, format === 'wide');
  }
}

/** A whole document as JSON (pretty) or YAML. */
export async function printDocument(doc: unknown, format: 'json' | 'yaml'): Promise<void> {
  process.stdout.write(format === 'json' ? `${JSON.stringify(doc, null, 2)}\n` : await yaml(doc));
}

/** The YAML library is a lazy bundle (src/yaml/index.ts): loaded by `-o yaml` only. */
async function yaml(doc: unknown): Promise<string> {
  return (await loadBundle('yaml')).stringify(doc);
}
