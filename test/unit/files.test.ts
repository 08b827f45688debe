// writeFileAtomic, the one way nhi-cni replaces a file (state, IPAM, policy
// state, and `nhi-cni install`'s executable and conflist).
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { TMP_PREFIX, tmpName, writeFileAtomic } from '../../src/sys/files.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-files-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const temporaries = () => readdirSync(dir).filter((n) => n.startsWith(TMP_PREFIX));

describe('writeFileAtomic', () => {
  it('gives the file the mode asked for, whatever the umask', () => {
    const old = process.umask(0o077);
    try {
      writeFileAtomic(join(dir, 'conf'), '{}', { mode: 0o644 });
    } finally {
      process.umask(old);
    }
    expect(statSync(join(dir, 'conf')).mode & 0o777).toBe(0o644);
  });

  it('copies another file into place with its own mode (an executable)', () => {
    const src = join(dir, 'source');
    writeFileSync(src, Buffer.from([0x7f, 0x45, 0x4c, 0x46, 1, 2, 3]));
    chmodSync(src, 0o600);
    writeFileAtomic(join(dir, 'nhi-cni'), 'old');
    writeFileAtomic(join(dir, 'nhi-cni'), { copyOf: src }, { mode: 0o755, durable: true });
    expect(readFileSync(join(dir, 'nhi-cni'))).toEqual(readFileSync(src));
    expect(statSync(join(dir, 'nhi-cni')).mode & 0o777).toBe(0o755);
    expect(temporaries()).toEqual([]);
  });

  it('leaves the old file and no temporary when the copy fails', () => {
    writeFileAtomic(join(dir, 'nhi-cni'), 'old');
    expect(() => writeFileAtomic(join(dir, 'nhi-cni'), { copyOf: join(dir, 'missing') }, { mode: 0o755 })).toThrow(/ENOENT/);
    expect(readFileSync(join(dir, 'nhi-cni'), 'utf8')).toBe('old');
    expect(temporaries()).toEqual([]);
  });

  it.each([['bytes', 'new'], ['a copy', 'copy']])('never writes through a link planted at the temporary name (%s)', (_what, kind) => {
    const victim = join(dir, 'victim');
    writeFileSync(victim, 'untouched');
    const src = join(dir, 'source');
    writeFileSync(src, 'new');
    symlinkSync(victim, tmpName(dir, 'f'));
    writeFileAtomic(join(dir, 'f'), kind === 'copy' ? { copyOf: src } : 'new');
    expect(readFileSync(victim, 'utf8')).toBe('untouched');
    expect(readFileSync(join(dir, 'f'), 'utf8')).toBe('new');
    expect(temporaries()).toEqual([]);
  });
});
