import { describe, expect, it } from 'vitest';
import { chooseType, PLUGIN_TYPES } from '../../src/plugin/skel.js';
import { caught } from '../helpers/caught.js';


describe('chooseType', () => {
  it('ships nhi-cni, nhi-ipam and nhi-policy', () => {
    expect([...PLUGIN_TYPES]).toStrictEqual(['nhi-cni', 'nhi-ipam', 'nhi-policy']);
  });

  it.each([['nhi-ipam'], ['nhi-cni'], ['nhi-policy']])('config type %s wins over the invoked name', (type) => {
    expect(chooseType(type, '/opt/cni/bin/nhi-ipam')).toBe(type);
    expect(chooseType(type, '/opt/cni/bin/something-else')).toBe(type);
    expect(chooseType(type, '')).toBe(type);
  });

  it.each([
    ['bridge', '/opt/cni/bin/nhi-ipam', 'nhi-ipam'],
    [undefined, '/opt/cni/bin/nhi-ipam', 'nhi-ipam'],
    ['host-local', 'nhi-ipam', 'nhi-ipam'],
    [42, './nhi-cni', 'nhi-cni'],
    [null, '/usr/libexec/cni/nhi-policy', 'nhi-policy'],
    [{ type: 'nhi-ipam' }, '/x/nhi-ipam', 'nhi-ipam'],
    ['NHI-IPAM', '/x/nhi-ipam', 'nhi-ipam'],
  ])('config type %j: the basename of %s', (type, invoked, out) => {
    expect(chooseType(type, invoked)).toBe(out);
  });

  it.each([
    ['bridge', '/opt/cni/bin/bridge'],
    [undefined, '/usr/local/bin/node'],
    ['NHI-IPAM', '/opt/cni/bin/NHI-IPAM'],
    ['nhi-ipam ', '/opt/cni/bin/nhi-ipam.exe'],
    ['', '/opt/cni/bin/nhi-ipam-old'],
  ])('config type %j, invoked as %s: code 7', (type, invoked) => {
    const e = caught(() => chooseType(type, invoked));
    expect(e.code).toBe(7);
    expect(e.details).toBe('install the binary (or a link to it) as one of nhi-cni, nhi-ipam, nhi-policy');
  });

  it('the message names both', () => {
    const e = caught(() => chooseType('bridge', '/opt/cni/bin/bridge'));
    expect(e.message).toBe('cannot tell which nhi-cni plugin type to run: config type is "bridge" and the binary is called "bridge"');
    const e2 = caught(() => chooseType(undefined, '/usr/bin/node'));
    expect(e2.message).toBe('cannot tell which nhi-cni plugin type to run: config type is undefined and the binary is called "node"');
  });

  it('a directory part that looks like a type does not count', () => {
    expect(caught(() => chooseType(undefined, '/opt/nhi-ipam/bin/plugin')).code).toBe(7);
  });
});
