// stdin and stdout of the CNI process contract. Both are used synchronously: the
// config is read whole before anything happens, and the result is written with
// writeSync so that it is on the pipe before the process exits.
import { readSync, writeSync } from 'node:fs';
import { CniError, Code } from '../cni/errors.js';
import { sleepMs } from './sleep.js';


function retryable(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EINTR';
}

/** Reads fd 0 to its end; more than `limit` bytes is refused (code 5). */
export function readStdin(limit: number): Buffer {
  const chunks: Buffer[] = [];
  let total = 0;
  const buf = Buffer.allocUnsafe(64 * 1024);
  for (;;) {
    let n: number;
    try {
      n = readSync(0, buf, 0, buf.length, null);
    } catch (e) {
      if (retryable(e)) {
        sleepMs(1);
        continue;
      }
      if ((e as NodeJS.ErrnoException).code === 'EOF') break;
      throw new CniError(Code.IoFailure, 'error reading the config from stdin', (e as Error).message);
    }
    if (n === 0) break;
    total += n;
    if (total > limit) {
      throw new CniError(Code.IoFailure, `the config on stdin is larger than ${limit} bytes`, 'a CNI config is a few kilobytes; refusing to read more');
    }
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

export function writeStdout(text: string): void {
  const data = Buffer.from(text, 'utf8');
  let off = 0;
  while (off < data.length) {
    try {
      off += writeSync(1, data, off, data.length - off);
    } catch (e) {
      if (!retryable(e)) throw e;
      sleepMs(1);
    }
  }
}
