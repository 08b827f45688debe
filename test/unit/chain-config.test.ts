import { describe, expect, it } from 'vitest';
import { DEFAULT_BRIDGE, DEFAULT_STATE_DIR, loadCniConfig } from '../../src/chain/config.js';
import { caught } from '../helpers/caught.js';


const IPAM = { type: 'host-local', subnet: '10.1.2.0/24' };
const load = (extra: Record<string, unknown>, envMac?: string) => loadCniConfig({ name: 'net1', type: 'nhi-cni', ipam: IPAM, ...extra }, envMac);

describe('loadCniConfig defaults', () => {
  it('fills every default', () => {
    expect(load({})).toStrictEqual({
      bridge: 'nhi0',
      isGateway: false,
      isDefaultGateway: false,
      forceAddress: false,
      ipMasq: false,
      clusterCIDRs: [],
      hairpinMode: false,
      promiscMode: false,
      macspoofchk: false,
      guard: 'addresses',
      ipamType: 'host-local',
      stateDir: '/var/lib/nhi-cni',
    });
    expect(DEFAULT_BRIDGE).toBe('nhi0');
    expect(DEFAULT_STATE_DIR).toBe('/var/lib/nhi-cni');
  });

  it('keeps the set fields', () => {
    const c = load({ bridge: 'br-x', forceAddress: true, ipMasq: true, hairpinMode: true, macspoofchk: true, mtu: 1450, stateDir: '/srv/state' });
    expect(c.bridge).toBe('br-x');
    expect(c.forceAddress).toBe(true);
    expect(c.ipMasq).toBe(true);
    expect(c.hairpinMode).toBe(true);
    expect(c.promiscMode).toBe(false);
    expect(c.macspoofchk).toBe(true);
    expect(c.mtu).toBe(1450);
    expect(c.stateDir).toBe('/srv/state');
  });

  it('spoofcheck: on by default; off leaves the MAC check to macspoofchk, and the RA guard alone without it', () => {
    expect(load({ spoofcheck: true }).guard).toBe('addresses');
    expect(load({ spoofcheck: false, macspoofchk: true }).guard).toBe('mac');
    expect(load({ spoofcheck: false }).guard).toBe('none');
    expect(load({ macspoofchk: false }).guard).toBe('addresses');
  });

  it('ipamType is the ipam section type', () => {
    expect(load({ ipam: { type: 'nhi-ipam' } }).ipamType).toBe('nhi-ipam');
    expect(load({ ipam: { type: 'dhcp', extra: 1 } }).ipamType).toBe('dhcp');
  });

  it.each([
    [{}, false, false],
    [{ isGateway: true }, true, false],
    [{ isGateway: false }, false, false],
    [{ isDefaultGateway: true }, true, true],
    [{ isGateway: false, isDefaultGateway: true }, true, true],
    [{ isDefaultGateway: false }, false, false],
  ])('%j gives isGateway=%s isDefaultGateway=%s', (extra, gw, dgw) => {
    const c = load(extra);
    expect(c.isGateway).toBe(gw);
    expect(c.isDefaultGateway).toBe(dgw);
  });
});

describe('loadCniConfig bridge name', () => {
  it('accepts a 15-character name', () => {
    expect(load({ bridge: 'a'.repeat(15) }).bridge).toBe('a'.repeat(15));
  });

  it.each([['a'.repeat(16)], ['br/0'], ['br:0'], ['br 0'], ['br\t0'], [''], ['.'], ['..'], ['br\u0001']])('refuses %j with code 7', (bridge) => {
    const e = caught(() => load({ bridge }));
    expect(e.code).toBe(7);
    expect(e.message.startsWith(`bridge name ${JSON.stringify(bridge)} `)).toBe(true);
  });

  it('names the length in the message', () => {
    expect(caught(() => load({ bridge: 'a'.repeat(16) })).message).toBe(`bridge name "${'a'.repeat(16)}" is 16 bytes long; the kernel allows at most 15`);
  });
});

describe('loadCniConfig refusals', () => {
  it('missing ipam is code 7', () => {
    const e = caught(() => loadCniConfig({ name: 'net1', type: 'nhi-cni' }));
    expect(e.code).toBe(7);
    expect(e.message).toMatch(/missing 'ipam'/);
  });

  it('ipam without a type is code 7', () => {
    const e = caught(() => load({ ipam: {} }));
    expect(e.code).toBe(7);
    expect(e.details).toContain('config.ipam.type');
  });

  it('hairpinMode with promiscMode is code 7 with the reference message', () => {
    const e = caught(() => load({ hairpinMode: true, promiscMode: true }));
    expect(e.code).toBe(7);
    expect(e.message).toBe('cannot set hairpin mode and promiscuous mode at the same time');
  });

  it('either of hairpinMode and promiscMode alone is fine', () => {
    expect(load({ hairpinMode: true, promiscMode: false }).hairpinMode).toBe(true);
    expect(load({ promiscMode: true }).promiscMode).toBe(true);
  });

  it.each([
    [{ isGateway: 'yes' }, 'config.isGateway'],
    [{ isDefaultGateway: 1 }, 'config.isDefaultGateway'],
    [{ ipMasq: 'true' }, 'config.ipMasq'],
    [{ bridge: 5 }, 'config.bridge'],
    [{ mtu: '1500' }, 'config.mtu'],
    [{ stateDir: ['/a'] }, 'config.stateDir'],
    [{ ipam: 'host-local' }, 'config.ipam'],
    [{ dns: { nameservers: '1.1.1.1' } }, 'config.dns.nameservers'],
    [{ runtimeConfig: { mac: 5 } }, 'config.runtimeConfig.mac'],
    [{ args: { cni: { mac: true } } }, 'config.args.cni.mac'],
  ])('wrong type %j is code 7 naming %s', (extra, path) => {
    const e = caught(() => load(extra));
    expect(e.code).toBe(7);
    expect(e.message).toBe('invalid nhi-cni configuration');
    expect(e.details).toContain(`${path}:`);
  });
});

describe('loadCniConfig mtu', () => {
  it.each([[68], [1500], [9000], [65535]])('accepts %d', (mtu) => {
    expect(load({ mtu }).mtu).toBe(mtu);
  });

  it.each([[67], [0], [-1], [65536], [1500.5]])('refuses %d with code 7', (mtu) => {
    const e = caught(() => load({ mtu }));
    expect(e.code).toBe(7);
    expect(e.details).toContain('config.mtu:');
  });

  it('leaves mtu out when not set', () => {
    expect('mtu' in load({})).toBe(false);
  });
});

describe('loadCniConfig stateDir', () => {
  it.each([['var/lib/x'], ['./x'], [''], ['/var/lib/../etc'], ['/var/lib/x/..'], ['/..']])('refuses %j with code 7', (stateDir) => {
    const e = caught(() => load({ stateDir }));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`stateDir ${JSON.stringify(stateDir)} ${stateDir.startsWith('/') ? 'may not contain ".."' : 'must be an absolute path'}`);
  });

  it('accepts names that merely contain dots', () => {
    expect(load({ stateDir: '/var/lib/a..b/.x' }).stateDir).toBe('/var/lib/a..b/.x');
  });
});

describe('loadCniConfig MAC', () => {
  const RT = '0a:00:00:00:00:01';
  const ARGS = '0a:00:00:00:00:02';
  const ENV = '0a:00:00:00:00:03';

  it('runtimeConfig.mac wins over args.cni.mac and CNI_ARGS', () => {
    expect(load({ runtimeConfig: { mac: RT }, args: { cni: { mac: ARGS } } }, ENV).mac).toBe(RT);
  });

  it('args.cni.mac wins over CNI_ARGS', () => {
    expect(load({ args: { cni: { mac: ARGS } } }, ENV).mac).toBe(ARGS);
    expect(load({ runtimeConfig: {}, args: { cni: { mac: ARGS } } }, ENV).mac).toBe(ARGS);
  });

  it('CNI_ARGS MAC is used last', () => {
    expect(load({ runtimeConfig: {}, args: { cni: {} } }, ENV).mac).toBe(ENV);
    expect(load({}, ENV).mac).toBe(ENV);
  });

  it('no MAC anywhere leaves mac out', () => {
    expect('mac' in load({})).toBe(false);
  });

  it('lowercases the MAC', () => {
    expect(load({ runtimeConfig: { mac: '0A:BC:DE:F0:12:34' } }).mac).toBe('0a:bc:de:f0:12:34');
    expect(load({}, 'AA:BB:CC:DD:EE:FF').mac).toBe('aa:bb:cc:dd:ee:ff');
  });

  it.each([['0a:00:00:00:00'], ['0a-00-00-00-00-01'], ['0a:00:00:00:00:01:02'], ['zz:00:00:00:00:01'], ['0a:0:00:00:00:01'], ['0a:00:00:00:00:01\n']])(
    'refuses invalid %j with code 7',
    (mac) => {
      const e = caught(() => load({ runtimeConfig: { mac } }));
      expect(e.code).toBe(7);
      expect(e.message).toBe(`invalid MAC address ${JSON.stringify(mac)}`);
    },
  );

  it('an empty MAC falls through to the next source, as in the reference', () => {
    expect(load({ runtimeConfig: { mac: '' }, args: { cni: { mac: '0a:00:00:00:00:02' } } }).mac).toBe('0a:00:00:00:00:02');
    expect(load({ runtimeConfig: { mac: '' } }, '0a:00:00:00:00:03').mac).toBe('0a:00:00:00:00:03');
    expect('mac' in load({ runtimeConfig: { mac: '' } }, '')).toBe(false);
  });

  it('refuses an invalid CNI_ARGS MAC too', () => {
    expect(caught(() => load({}, 'nonsense')).code).toBe(7);
  });

  it.each([['01:00:5e:00:00:01'], ['ff:ff:ff:ff:ff:ff'], ['0B:00:00:00:00:01'], ['33:33:00:00:00:01']])('refuses multicast %s with code 7', (mac) => {
    const e = caught(() => load({ args: { cni: { mac } } }));
    expect(e.code).toBe(7);
    expect(e.message).toBe(`MAC address ${mac} is a multicast address`);
  });

  it('accepts a globally administered unicast MAC', () => {
    expect(load({}, '00:11:22:33:44:55').mac).toBe('00:11:22:33:44:55');
  });
});

describe('loadCniConfig dns', () => {
  it.each([[{ nameservers: ['10.0.0.10'] }], [{ domain: 'cluster.local' }], [{ search: ['svc.cluster.local'] }], [{ options: ['ndots:5'] }]])('keeps %j', (dns) => {
    expect(load({ dns }).dns).toStrictEqual(dns);
  });

  it.each([[{}], [{ nameservers: [], search: [], options: [] }], [{ domain: '' }]])('drops empty %j', (dns) => {
    expect('dns' in load({ dns })).toBe(false);
  });
});

describe('loadCniConfig clusterCIDR (no masquerade inside the cluster)', () => {
  it('takes one CIDR or a list, IPv4 and IPv6, normalised and deduplicated', () => {
    expect(load({ clusterCIDR: '10.244.0.0/16' }).clusterCIDRs).toStrictEqual(['10.244.0.0/16']);
    expect(load({ clusterCIDR: ['10.244.0.0/16', 'FD00:10:244:0::/56', '10.244.0.0/16'] }).clusterCIDRs).toStrictEqual(['10.244.0.0/16', 'fd00:10:244::/56']);
  });

  it.each([
    ['10.244.0.1/16', 'has host bits set', 'did you mean 10.244.0.0/16?'],
    ['10.244.0.0', 'is not a CIDR', ''],
    ['10.244.0.0/33', 'is not a CIDR', ''],
    ['fd00::/129', 'is not a CIDR', ''],
    ['10.0.0.0/8 masquerade', 'is not a CIDR', ''],
  ])('refuses %j with code 7 (%s)', (cidr, msg, details) => {
    const e = caught(() => load({ clusterCIDR: cidr }));
    expect(e.code).toBe(7);
    expect(e.message).toContain(msg);
    expect(e.details).toContain(details);
    const l = caught(() => load({ clusterCIDR: ['10.1.0.0/16', cidr] }));
    expect(l.message).toContain('clusterCIDR[1]');
  });

  it.each([[[]], [5], [[5]], [Array.from({ length: 17 }, (_, i) => `10.${i}.0.0/16`)]])('refuses the shape %j with code 7', (v) => {
    const e = caught(() => load({ clusterCIDR: v }));
    expect(e.code).toBe(7);
    expect(e.details).toContain('config.clusterCIDR');
  });
});
