// A short run of `npm run fuzz` (scripts/fuzz.mjs) with a fixed seed: a few
// hundred generated and mutated invocations of the real binary, in the
// fuzzer's own node and pod namespaces. Any crash, stack trace, non-spec
// stdout, code 100, write on rejection or case over 1 s fails the test, and
// the failing cases are printed (replay one with
// `node scripts/fuzz.mjs --replay <case.json>`). Long campaigns: npm run fuzz.
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Scratch } from '../helpers/plugin.js';
import { ROOT } from '../helpers/paths.js';

const SEED = 11;
// 120 cases take ~35 s alone and up to twice that beside the other test
// files; the time budget is a guard, not the measure.
const COUNT = 120;

describe('npm run fuzz, short', () => {
  const scratch = new Scratch();
  afterAll(() => scratch.cleanup());

  it(`${COUNT} cases of seed ${SEED}: no crash, no code 100, nothing left by a rejection, none over 1 s`, () => {
    const out = scratch.path('cases');
    const r = spawnSync(process.execPath, [join(ROOT, 'scripts', 'fuzz.mjs'), '--seed', String(SEED), '--count', String(COUNT), '--seconds', '100', '--out', out], {
      encoding: 'utf8', cwd: scratch.dir, timeout: 115_000,
    });
    const report = `${r.stdout}${r.stderr}`;
    expect(readdirSync(out), report).toEqual([]);
    expect(r.status, report).toBe(0);
    const ran = /fuzz: (\d+) cases .*ADDs that succeeded \(then CHECKed and DELeted\): (\d+)/.exec(r.stdout);
    expect(ran, report).not.toBeNull();
    // The run must have exercised the plugin, not just refused early.
    expect(Number(ran![1])).toBeGreaterThanOrEqual(100);
    expect(Number(ran![2])).toBeGreaterThanOrEqual(12);
  }, 130_000);
});
