import { describe, expect, it } from 'vitest';
import { decodeConfig, MAX_STDIN_BYTES, validateNetworkName } from '../../src/cni/config.js';
import { caught } from '../helpers/caught.js';


const decode = (text: string) => decodeConfig(Buffer.from(text, 'utf8'));
const NAME_RULE = 'a network name starts with a letter or digit, holds only letters, digits, "_", "." and "-", and never ".."';

describe('decodeConfig', () => {
  it('returns the whole object, other keys included', () => {
    const conf = { cniVersion: '1.1.0', name: 'net1', type: 'nhi-ipam', ipam: { ranges: [[{ subnet: '10.1.2.0/24' }]] } };
    expect(decode(JSON.stringify(conf))).toStrictEqual(conf);
  });

  it.each([[''], ['{'], ['{"name": "a",}'], ['not json'], ["{'name':'a'}"]])('malformed JSON %j is code 6', (text) => {
    const e = caught(() => decode(text));
    expect(e.code).toBe(6);
    expect(e.message).toBe('error unmarshalling network config');
    expect(e.details).not.toBe('');
  });

  it.each([['[]'], ['[{"name":"a"}]'], ['null'], ['42'], ['"net1"'], ['true']])('non-object %s is code 6', (text) => {
    const e = caught(() => decode(text));
    expect(e.code).toBe(6);
    expect(e.message).toBe('error unmarshalling network config');
    expect(e.details).toBe('the config on stdin must be a JSON object');
  });

  it.each([['{}'], ['{"name":""}'], ['{"cniVersion":"1.0.0","type":"nhi-ipam"}']])('missing name in %s is code 7', (text) => {
    const e = caught(() => decode(text));
    expect(e.code).toBe(7);
    expect(e.message).toBe('missing network name');
  });

  it.each([['{"name":5}'], ['{"name":null}'], ['{"name":["a"]}'], ['{"name":{}}']])('non-string name in %s is code 7', (text) => {
    const e = caught(() => decode(text));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid network name');
  });

  it.each([['../../etc'], ['a/b'], ['.hidden'], ['a..b'], ['..'], ['.'], ['-net'], ['_net'], ['net 1'], ['net\n'], ['nét'], ['a\0b'], ['a..']])(
    'invalid name %j is code 7',
    (name) => {
      const e = caught(() => decode(JSON.stringify({ name })));
      expect(e.code).toBe(7);
      expect(e.message).toBe(`invalid network name ${JSON.stringify(name)}`);
      expect(e.details).toBe(NAME_RULE);
      expect(validateNetworkName(name)).toBe(NAME_RULE);
    },
  );

  it('a 256-character name is code 7', () => {
    const name = 'n'.repeat(256);
    const e = caught(() => decode(JSON.stringify({ name })));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`invalid network name "${name}"`);
    expect(e.details).toBe('a network name is at most 255 characters');
  });

  it.each([['net1'], ['a'], ['0'], ['1net'], ['my-net_2.v4'], ['a.b'], ['A.B-C_D'], ['n'.repeat(255)]])('good name %j passes', (name) => {
    expect(decode(JSON.stringify({ name })).name).toBe(name);
    expect(validateNetworkName(name)).toBeUndefined();
  });

  it('reads UTF-8', () => {
    expect(decodeConfig(Buffer.from('{"name":"n","x":"é"}', 'utf8')).x).toBe('é');
  });

  it('caps stdin at 1 MiB', () => {
    expect(MAX_STDIN_BYTES).toBe(1048576);
  });
});
