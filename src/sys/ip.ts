// iproute2 in batch mode: one `ip -batch -` process applies many commands.
// Commands are built from argument arrays; since ip splits batch lines on
// whitespace and treats quotes and "#" specially, every token is checked to
// hold none of those before it is joined into a line.
import { CniError, Code } from '../cni/errors.js';
import { run, type ExecResult } from './exec.js';

const SAFE_TOKEN = /^[A-Za-z0-9_.:/@+,%=-]+$/;

/** Whether `ip -batch` can take this token (names the chain passes to ip are checked with it up front). */
export function ipSafe(token: string): boolean {
  return SAFE_TOKEN.test(token);
}

export class IpBatch {
  readonly lines: string[][] = [];

  add(...tokens: (string | number)[]): this {
    const line = tokens.map(String);
    for (const t of line) {
      if (!SAFE_TOKEN.test(t)) {
        throw new CniError(Code.InvalidConfig, `${JSON.stringify(t)} cannot be passed to ip`, 'names and addresses may hold only letters, digits and _ . : / @ + , % = -');
      }
    }
    this.lines.push(line);
    return this;
  }

  get empty(): boolean {
    return this.lines.length === 0;
  }

  text(): string {
    return this.lines.map((l) => `${l.join(' ')}\n`).join('');
  }
}

export interface BatchFailure {
  /** 0-based index of the failing line, when ip said which. */
  line?: number;
  message: string;
}

/** Parses ip's "Command failed -:N" to the failing line. */
export function batchFailure(r: ExecResult): BatchFailure {
  const m = /Command failed -:(\d+)/.exec(r.stderr);
  const message = r.stderr.replace(/Command failed -:\d+\s*/g, '').trim() || `exit status ${r.exitCode}`;
  return m ? { line: Number(m[1]) - 1, message } : { message };
}

/** `ip -batch -` in the plugin's own namespace (the node); `force`: go on after a failing line. */
export function runHostBatch(b: IpBatch, json = false, force = false): Promise<ExecResult> {
  return run('ip', [...(json ? ['-j'] : []), ...(force ? ['-force'] : []), '-batch', '-'], b.text());
}

/** `ip -batch -` inside the namespace at `netns` (a path), entered with nsenter. */
export function runNetnsBatch(netns: string, b: IpBatch, json = false): Promise<ExecResult> {
  return run('nsenter', [`--net=${netns}`, '--', 'ip', ...(json ? ['-j'] : []), '-batch', '-'], b.text());
}
