// The lazy-bundle loader outside the executable (vitest runs the TypeScript):
// it imports the bundle's entry, once. In the executable it reads the bundle
// from the SEA assets; test/plugin/binary.test.ts runs the CLI through it.
import { describe, expect, it } from 'vitest';
import { loadBundle, loadBundleSync } from '../../src/lazy.js';
import * as cli from '../../src/cli/index.js';

describe('loadBundle', () => {
  it('gives the cli entry module itself, the same promise every time', async () => {
    const p = loadBundle('cli');
    expect(loadBundle('cli')).toBe(p);
    const m = await p;
    expect(m.runCli).toBe(cli.runCli);
  });

  it('refuses a bundle that does not exist', async () => {
    // @ts-expect-error not a bundle name
    await expect(loadBundle('nope')).rejects.toThrow();
  });

  it('loads the yaml bundle synchronously, once', () => {
    const m = loadBundleSync('yaml');
    expect(loadBundleSync('yaml')).toBe(m);
    expect(m.parse('a: [1, 2]')).toEqual({ a: [1, 2] });
    expect(m.stringify({ a: 1 })).toBe('a: 1\n');
  });
});
