import { describe, expect, it } from 'vitest';
import {
  atLeast,
  configVersion,
  CURRENT_VERSION,
  isSupported,
  requireVerbVersion,
  resultFamily,
  SUPPORTED_VERSIONS,
  type CniVersion,
} from '../../src/cni/version.js';
import { caught } from '../helpers/caught.js';


const ALL: CniVersion[] = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'];
const SUPPORTED_TEXT = 'plugin supports [0.1.0 0.2.0 0.3.0 0.3.1 0.4.0 1.0.0 1.1.0]';

describe('versions', () => {
  it('supports exactly the seven spec versions, newest 1.1.0', () => {
    expect([...SUPPORTED_VERSIONS]).toStrictEqual(ALL);
    expect(CURRENT_VERSION).toBe('1.1.0');
  });

  it('isSupported', () => {
    for (const v of ALL) expect(isSupported(v)).toBe(true);
    for (const v of ['0.5.0', '1.2.0', '1.0', 'v1.0.0', '', '1.0.0 ']) expect(isSupported(v)).toBe(false);
  });

  it('atLeast follows the version order', () => {
    for (const [i, a] of ALL.entries()) {
      for (const [j, b] of ALL.entries()) expect(atLeast(a, b)).toBe(i >= j);
    }
  });

  it.each([
    ['0.1.0', 'legacy'],
    ['0.2.0', 'legacy'],
    ['0.3.0', 'v04'],
    ['0.3.1', 'v04'],
    ['0.4.0', 'v04'],
    ['1.0.0', 'v1'],
    ['1.1.0', 'v1'],
  ] as const)('resultFamily(%s) is %s', (v, fam) => {
    expect(resultFamily(v)).toBe(fam);
  });
});

describe('configVersion', () => {
  it.each([[undefined], [''], [null]])('%j means 0.1.0', (v) => {
    expect(configVersion(v)).toBe('0.1.0');
  });

  it.each(ALL)('%s is itself', (v) => {
    expect(configVersion(v)).toBe(v);
  });

  it.each([['0.5.0'], ['1.2.0'], ['2.0.0'], ['1.0'], ['v1.0.0'], [' 1.0.0']])('unknown %j is code 1 listing the supported versions', (v) => {
    const e = caught(() => configVersion(v));
    expect(e.code).toBe(1);
    expect(e.message).toBe('incompatible CNI versions');
    expect(e.details).toBe(`config is ${JSON.stringify(v)}, ${SUPPORTED_TEXT}`);
  });

  it.each([[1], [1.1], [true], [{}], [['1.0.0']]])('non-string %j is code 1', (v) => {
    const e = caught(() => configVersion(v));
    expect(e.code).toBe(1);
    expect(e.details).toContain(SUPPORTED_TEXT);
  });
});

describe('requireVerbVersion', () => {
  const minFor: Record<string, CniVersion | undefined> = { ADD: undefined, DEL: undefined, VERSION: undefined, CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };
  const cases = Object.entries(minFor).flatMap(([verb, min]) => ALL.map((v) => [verb, v, !min || atLeast(v, min)] as const));

  it.each(cases)('%s with %s allowed: %s', (verb, v, ok) => {
    if (ok) {
      expect(() => requireVerbVersion(verb, v)).not.toThrow();
    } else {
      const e = caught(() => requireVerbVersion(verb, v));
      expect(e.code).toBe(1);
      expect(e.message).toBe(`config version does not allow ${verb}`);
      expect(e.details).toBe(`${verb} needs cniVersion ${minFor[verb]} or later; the config says ${v}`);
    }
  });

  it('explicit boundaries', () => {
    expect(caught(() => requireVerbVersion('CHECK', '0.3.1')).code).toBe(1);
    expect(() => requireVerbVersion('CHECK', '0.4.0')).not.toThrow();
    expect(caught(() => requireVerbVersion('GC', '1.0.0')).code).toBe(1);
    expect(caught(() => requireVerbVersion('STATUS', '1.0.0')).code).toBe(1);
    expect(() => requireVerbVersion('GC', '1.1.0')).not.toThrow();
    expect(() => requireVerbVersion('STATUS', '1.1.0')).not.toThrow();
    expect(() => requireVerbVersion('ADD', '0.1.0')).not.toThrow();
    expect(() => requireVerbVersion('DEL', '0.1.0')).not.toThrow();
  });
});
