// The rules of src/sys/safe-path.ts on real directories (the tests run as root).
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { readNoFollow, safeRoot, safeSubdir } from '../../src/sys/safe-path.js';
import { writeFileAtomic } from '../../src/sys/files.js';
import { caught } from '../helpers/caught.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-safe-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

describe('safeRoot', () => {
  it('creates a missing directory, 0700', () => {
    expect(safeRoot(join(dir, 'a', 'b'), 'stateDir')).toBe(true);
    expect(existsSync(join(dir, 'a', 'b'))).toBe(true);
    expect(safeRoot(join(dir, 'c'), 'stateDir', { create: false })).toBe(false);
  });
  it('accepts a link to a root-owned 0755 directory', () => {
    mkdirSync(join(dir, 'disk'), { mode: 0o755 });
    symlinkSync(join(dir, 'disk'), join(dir, 'link'));
    expect(safeRoot(join(dir, 'link'), 'stateDir')).toBe(true);
  });
  it('refuses a link to a directory others can write or someone else owns, and a dangling link', () => {
    mkdirSync(join(dir, 'open'));
    chmodSync(join(dir, 'open'), 0o777);
    symlinkSync(join(dir, 'open'), join(dir, 'l1'));
    expect(caught(() => safeRoot(join(dir, 'l1'), 'dataDir'))).toMatchObject({ code: 7, message: `dataDir ${dir}/l1 is a symbolic link to a directory that is not root-owned or that group or others can write` });
    mkdirSync(join(dir, 'theirs'), { mode: 0o755 });
    chownSync(join(dir, 'theirs'), 65534, 65534);
    symlinkSync(join(dir, 'theirs'), join(dir, 'l2'));
    expect(caught(() => safeRoot(join(dir, 'l2'), 'dataDir')).code).toBe(7);
    symlinkSync(join(dir, 'nothing'), join(dir, 'l3'));
    expect(caught(() => safeRoot(join(dir, 'l3'), 'dataDir')).message).toMatch(/leads nowhere usable/);
  });
  it('refuses a real directory group or others can write, and a file', () => {
    mkdirSync(join(dir, 'g'));
    chmodSync(join(dir, 'g'), 0o775);
    expect(caught(() => safeRoot(join(dir, 'g'), 'stateDir')).message).toBe(`stateDir ${dir}/g is not root-owned or group or others can write it`);
    writeFileSync(join(dir, 'f'), '');
    expect(caught(() => safeRoot(join(dir, 'f'), 'stateDir')).message).toBe(`stateDir ${dir}/f is not a directory`);
  });
});

describe('inside our directories', () => {
  it('safeSubdir creates each component and refuses a link among them', () => {
    expect(safeSubdir(dir, ['n', 'attachments'])).toBe(join(dir, 'n', 'attachments'));
    mkdirSync(join(dir, 'elsewhere'));
    symlinkSync(join(dir, 'elsewhere'), join(dir, 'm'));
    expect(caught(() => safeSubdir(dir, ['m', 'attachments'])).message).toBe(`${dir}/m is a symbolic link: nhi-cni does not follow links inside its directories`);
    expect(existsSync(join(dir, 'elsewhere', 'attachments'))).toBe(false);
    expect(safeSubdir(dir, ['x'], { create: false })).toBeUndefined();
  });
  it('reads and writes never go through a link', () => {
    writeFileSync(join(dir, 'target'), 'secret');
    symlinkSync(join(dir, 'target'), join(dir, 'state.json'));
    expect(caught(() => readNoFollow(join(dir, 'state.json'))).code).toBe(7);
    // A link at the temporary name is not written through; one at the name is replaced, not followed.
    symlinkSync(join(dir, 'target'), join(dir, `.nhi-tmp-x.json.${process.pid}`));
    writeFileAtomic(join(dir, 'x.json'), 'new');
    writeFileAtomic(join(dir, 'state.json'), 'new');
    expect(readFileSync(join(dir, 'target'), 'utf8')).toBe('secret');
    expect(readNoFollow(join(dir, 'state.json'))).toBe('new');
  });
});
