// Sections where a typo would turn security or logging off are strict: an
// unknown key or value is code 7 naming it and the key probably meant.
import { describe, expect, it } from 'vitest';
import { loadPolicyConfig } from '../../src/policy/engine/index.js';
import { closest, editDistance } from '../../src/cni/suggest.js';
import { logFromConfig, logFromEnv } from '../../src/log.js';
import { caught } from '../helpers/caught.js';

describe('suggestions', () => {
  it('edit distance', () => {
    expect(editDistance('dirs', 'dir')).toBe(1);
    expect(editDistance('levle', 'level')).toBe(2);
    expect(editDistance('', 'abc')).toBe(3);
    expect(editDistance('same', 'same')).toBe(0);
  });
  it('suggests only a near key', () => {
    expect(closest('dirs', ['dir', 'manifests'])).toBe('dir');
    expect(closest('kubeConfig', ['dir', 'kubeconfig'])).toBe('kubeconfig');
    expect(closest('completely-else', ['dir', 'audit'])).toBeUndefined();
  });
});

describe('policy section', () => {
  it('an unknown key is code 7 naming it and the closest valid key', () => {
    const e = caught(() => loadPolicyConfig({ dirs: '/etc/nhi-cni/policies' }, '/var/lib/nhi-cni'));
    expect(e.code).toBe(7);
    expect(e.message).toBe('unknown key "dirs" in policy: did you mean "dir"?');
    expect(e.details).toMatch(/^policy knows dir, manifests, audit/);
  });
  it.each([['auditNamespace', 'auditNamespaces'], ['Audit', 'audit'], ['manifest', 'manifests'], ['kubeconfg', 'kubeconfig']])('%s: did you mean %s', (k, near) => {
    const e = caught(() => loadPolicyConfig({ dir: '/p', [k]: true }, '/s'));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`unknown key ${JSON.stringify(k)} in policy: did you mean ${JSON.stringify(near)}?`);
  });
  it('an unknown key with nothing near is still refused', () => {
    const e = caught(() => loadPolicyConfig({ dir: '/p', enforce: 'yes' }, '/s'));
    expect(e.message).toBe('unknown key "enforce" in policy');
  });
  it('known keys still load', () => {
    expect(loadPolicyConfig({ dir: '/p', audit: true }, '/s')).toMatchObject({ dir: '/p', audit: { all: true } });
  });
});

describe('log section', () => {
  it('an unknown key is code 7 with a suggestion', () => {
    const e = caught(() => logFromConfig({ levle: 'info' }));
    expect(e.code).toBe(7);
    expect(e.message).toBe('unknown key "levle" in log: did you mean "level"?');
    expect(caught(() => logFromConfig({ path: '/var/log/x' })).message).toBe('unknown key "path" in log');
  });
  it.each([['verbose'], ['INFO'], [3], ['']])('level %j is code 7', (level) => {
    const e = caught(() => logFromConfig({ level }));
    expect(e.code).toBe(7);
    expect(e.message).toMatch(/^log\.level .* is not a log level: use one of trace, debug, info, warn, error, fatal, silent$/);
  });
  it.each([['nhi.log'], ['./log/x'], ['/var/log/../x'], [''], [42]])('file %j is code 7', (file) => {
    const e = caught(() => logFromConfig({ file }));
    expect(e.code).toBe(7);
    expect(e.message).toMatch(/^log\.file .* (must be an absolute path|may not contain "\.\.")$/);
  });
  it('not an object is code 7', () => {
    expect(caught(() => logFromConfig('info')).code).toBe(7);
  });
  it('valid settings pass', () => {
    expect(logFromConfig({ file: '/var/log/nhi.log', level: 'trace' })).toEqual({ file: '/var/log/nhi.log', level: 'trace' });
    expect(logFromConfig(undefined)).toEqual({});
  });
  it('the environment: invalid values are code 4, empty ones unset', () => {
    expect(caught(() => logFromEnv({ NHI_CNI_LOG_LEVEL: 'loud' })).code).toBe(4);
    expect(caught(() => logFromEnv({ NHI_CNI_LOG_FILE: 'rel.log' })).code).toBe(4);
    expect(logFromEnv({ NHI_CNI_LOG_LEVEL: '', NHI_CNI_LOG_FILE: '' })).toEqual({});
    expect(logFromEnv({ NHI_CNI_LOG_LEVEL: 'debug', NHI_CNI_LOG_FILE: '/l' })).toEqual({ level: 'debug', file: '/l' });
  });
});
