import { describe, expect, it } from 'vitest';
import { COMMON_ARG_KEYS, parseCniArgs } from '../../src/cni/args.js';
import { caught } from '../helpers/caught.js';


describe('parseCniArgs', () => {
  it('returns {} for an empty string', () => {
    expect(parseCniArgs('', [])).toStrictEqual({});
  });

  it('parses K=V pairs', () => {
    expect(parseCniArgs('IP=10.1.2.3;K8S_POD_NAME=web-0', ['IP'])).toStrictEqual({ IP: '10.1.2.3', K8S_POD_NAME: 'web-0' });
  });

  it('knows the K8S_POD_* keys and IgnoreUnknown without being told', () => {
    const raw = 'IgnoreUnknown=0;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web-0;K8S_POD_INFRA_CONTAINER_ID=abc123;K8S_POD_UID=1-2-3';
    expect(parseCniArgs(raw, [])).toStrictEqual({
      IgnoreUnknown: '0',
      K8S_POD_NAMESPACE: 'default',
      K8S_POD_NAME: 'web-0',
      K8S_POD_INFRA_CONTAINER_ID: 'abc123',
      K8S_POD_UID: '1-2-3',
    });
    expect([...COMMON_ARG_KEYS].sort()).toStrictEqual(
      ['IgnoreUnknown', 'K8S_POD_INFRA_CONTAINER_ID', 'K8S_POD_NAME', 'K8S_POD_NAMESPACE', 'K8S_POD_UID'].sort(),
    );
  });

  it('keeps an empty value', () => {
    expect(parseCniArgs('K8S_POD_NAME=', [])).toStrictEqual({ K8S_POD_NAME: '' });
  });

  it('tolerates empty segments', () => {
    expect(parseCniArgs('K8S_POD_NAME=a;;K8S_POD_UID=u;', [])).toStrictEqual({ K8S_POD_NAME: 'a', K8S_POD_UID: 'u' });
  });

  it('keeps the last value of a repeated key', () => {
    expect(parseCniArgs('IP=10.0.0.1;IP=10.0.0.2', ['IP'])).toStrictEqual({ IP: '10.0.0.2' });
  });

  it('keys are case-sensitive', () => {
    const e = caught(() => parseCniArgs('ip=10.0.0.1', ['IP']));
    expect(e.code).toBe(4);
    expect(e.message).toBe('CNI_ARGS: unknown args [ip]');
  });

  it.each([['FOO'], ['A=B=C'], ['=V'], ['K8S_POD_NAME=a;bad'], ['IP=10.0.0.1=x']])('refuses the invalid pair in %j with code 4', (raw) => {
    const e = caught(() => parseCniArgs(raw, ['IP']));
    expect(e.code).toBe(4);
    expect(e.message).toMatch(/^CNI_ARGS: invalid pair "/);
    expect(e.details).toBe('CNI_ARGS must be K=V pairs separated by ";"');
  });

  it('names the invalid pair', () => {
    expect(caught(() => parseCniArgs('K8S_POD_NAME=a;A=B=C', [])).message).toBe('CNI_ARGS: invalid pair "A=B=C"');
  });

  it('an invalid pair is refused even with IgnoreUnknown=1', () => {
    expect(caught(() => parseCniArgs('IgnoreUnknown=1;junk', [])).code).toBe(4);
  });

  it('unknown keys are code 4 and named', () => {
    const e = caught(() => parseCniArgs('FOO=1;K8S_POD_NAME=a;BAR=2', []));
    expect(e.code).toBe(4);
    expect(e.message).toBe('CNI_ARGS: unknown args [FOO BAR]');
    expect(e.details).toBe('add IgnoreUnknown=1 to CNI_ARGS to let unknown keys pass');
  });

  it('a key the plugin type knows is not unknown', () => {
    expect(parseCniArgs('IP=10.1.2.3', ['IP'])).toStrictEqual({ IP: '10.1.2.3' });
    expect(caught(() => parseCniArgs('IP=10.1.2.3', [])).message).toBe('CNI_ARGS: unknown args [IP]');
  });

  describe('IgnoreUnknown', () => {
    const truthy = ['1', 'true', 'TRUE', 'True'];
    const keys = ['IgnoreUnknown', 'ignoreunknown', 'IGNOREUNKNOWN', 'ignoreUnknown'];
    const cases = keys.flatMap((k) => truthy.map((v) => [k, v] as const));

    it.each(cases)('%s=%s lets unknown keys pass, first or last', (key, value) => {
      expect(parseCniArgs(`${key}=${value};FOO=bar;K8S_POD_NAME=p`, [])).toStrictEqual({ [key]: value, FOO: 'bar', K8S_POD_NAME: 'p' });
      expect(parseCniArgs(`FOO=bar;K8S_POD_NAME=p;${key}=${value}`, [])).toStrictEqual({ FOO: 'bar', K8S_POD_NAME: 'p', [key]: value });
      expect(parseCniArgs(`FOO=bar;${key}=${value};BAZ=q`, [])).toStrictEqual({ FOO: 'bar', [key]: value, BAZ: 'q' });
    });

    it.each(keys)('%s in any case is itself never an unknown key', (key) => {
      expect(parseCniArgs(`${key}=1`, [])).toStrictEqual({ [key]: '1' });
      expect(parseCniArgs(`${key}=0`, [])).toStrictEqual({ [key]: '0' });
    });

    // The reference decodes IgnoreUnknown as a boolean: 0 and false mean "do not ignore".
    it.each([['0'], ['false'], ['FALSE'], ['False']])('IgnoreUnknown=%s does not let unknown keys pass', (value) => {
      for (const raw of [`IgnoreUnknown=${value};FOO=bar`, `FOO=bar;IgnoreUnknown=${value}`]) {
        const e = caught(() => parseCniArgs(raw, []));
        expect(e.code).toBe(4);
        expect(e.message).toBe('CNI_ARGS: unknown args [FOO]');
      }
    });

    it.each([['yes'], ['2'], ['']])('IgnoreUnknown=%j does not let unknown keys pass', (value) => {
      expect(caught(() => parseCniArgs(`IgnoreUnknown=${value};FOO=bar`, [])).code).toBe(4);
    });
  });
});
