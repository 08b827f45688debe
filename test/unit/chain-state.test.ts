import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AttachmentStore, RunCache, type AttachmentRecord } from '../../src/chain/state.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-cni-state-'));
});
afterEach(() => {
  rmSync(dir, { recursive: true, force: true });
});

const rec = (containerId: string, ifname = 'eth0', extra: Partial<AttachmentRecord> = {}): AttachmentRecord => ({
  containerId,
  ifname,
  netns: `/var/run/netns/${containerId}`,
  bridge: 'nhi0',
  hostVeth: 'veth0123abcd',
  ips: ['10.1.2.5/24'],
  created: '2024-01-01T00:00:00.000Z',
  ...extra,
});

describe('AttachmentStore', () => {
  it('lives under <stateDir>/<network>/attachments', () => {
    expect(new AttachmentStore(dir, 'net1').dir).toBe(join(dir, 'net1', 'attachments'));
  });

  it('write/read/list/remove round trip', () => {
    const s = new AttachmentStore(dir, 'net1');
    expect(s.list()).toStrictEqual([]);
    expect(s.read('c1', 'eth0')).toBeUndefined();
    const a = rec('c1');
    const b = rec('c2', 'net1', { mac: '0a:58:0a:01:02:06', ips: ['10.1.2.6/24', 'fd00:1::6/64'] });
    s.write(a);
    s.write(b);
    expect(s.read('c1', 'eth0')).toStrictEqual(a);
    expect(s.read('c2', 'net1')).toStrictEqual(b);
    expect(s.read('c2', 'eth0')).toBeUndefined();
    expect(s.list().sort((x, y) => x.containerId.localeCompare(y.containerId))).toStrictEqual([a, b]);
    s.remove('c1', 'eth0');
    expect(s.read('c1', 'eth0')).toBeUndefined();
    expect(s.list()).toStrictEqual([b]);
  });

  it('names the file <containerId>:<ifname>.json and leaves no temp file', () => {
    const s = new AttachmentStore(dir, 'net1');
    s.write(rec('abc123', 'eth1'));
    expect(readdirSync(s.dir)).toStrictEqual(['abc123:eth1.json']);
    expect(JSON.parse(readFileSync(join(s.dir, 'abc123:eth1.json'), 'utf8'))).toStrictEqual(rec('abc123', 'eth1'));
  });

  it('a write replaces the record of the same attachment', () => {
    const s = new AttachmentStore(dir, 'net1');
    s.write(rec('c1', 'eth0', { ips: [] }));
    s.write(rec('c1', 'eth0', { ips: ['10.1.2.9/24'] }));
    expect(s.list()).toStrictEqual([rec('c1', 'eth0', { ips: ['10.1.2.9/24'] })]);
  });

  it('networks are kept apart', () => {
    new AttachmentStore(dir, 'net1').write(rec('c1'));
    expect(new AttachmentStore(dir, 'net2').read('c1', 'eth0')).toBeUndefined();
    expect(new AttachmentStore(dir, 'net2').list()).toStrictEqual([]);
  });

  it('removing a missing record is fine, also without the directory', () => {
    const s = new AttachmentStore(dir, 'net1');
    expect(() => s.remove('nope', 'eth0')).not.toThrow();
    s.write(rec('c1'));
    expect(() => s.remove('nope', 'eth0')).not.toThrow();
    s.remove('c1', 'eth0');
    expect(() => s.remove('c1', 'eth0')).not.toThrow();
  });

  it('list skips non-json, hidden and torn files', () => {
    const s = new AttachmentStore(dir, 'net1');
    s.write(rec('good'));
    writeFileSync(join(s.dir, 'notes.txt'), '{"containerId":"txt"}');
    writeFileSync(join(s.dir, 'torn:eth0.json'), '{"containerId":"torn","ifn');
    writeFileSync(join(s.dir, 'empty:eth0.json'), '');
    writeFileSync(join(s.dir, '.nhi-tmp-x:eth0.json.123'), JSON.stringify(rec('tmp')));
    writeFileSync(join(s.dir, '.hidden:eth0.json'), JSON.stringify(rec('hidden')));
    mkdirSync(join(s.dir, 'adir.json'));
    expect(s.list()).toStrictEqual([rec('good')]);
    expect(s.read('torn', 'eth0')).toBeUndefined();
  });
});

describe('RunCache', () => {
  it('set/get/delete round trip under <dir>/<netnsId>/<key>.json', () => {
    const c = new RunCache(dir, 'ns1');
    expect(c.get('bridge-nhi0')).toBeUndefined();
    c.set('bridge-nhi0', { ifindex: 7, gateways: ['10.1.2.1/24'] });
    expect(readdirSync(join(dir, 'ns1'))).toStrictEqual(['bridge-nhi0.json']);
    expect(c.get('bridge-nhi0')).toStrictEqual({ ifindex: 7, gateways: ['10.1.2.1/24'] });
    c.set('bridge-nhi0', { ifindex: 8, gateways: [] });
    expect(c.get('bridge-nhi0')).toStrictEqual({ ifindex: 8, gateways: [] });
    c.delete('bridge-nhi0');
    expect(c.get('bridge-nhi0')).toBeUndefined();
    expect(existsSync(join(dir, 'ns1', 'bridge-nhi0.json'))).toBe(false);
  });

  it('keys of different node namespaces are kept apart', () => {
    new RunCache(dir, 'ns1').set('k', 1);
    expect(new RunCache(dir, 'ns2').get('k')).toBeUndefined();
    expect(new RunCache(dir, 'ns1').get('k')).toBe(1);
  });

  it('deleting a missing key is fine; a torn file reads as undefined', () => {
    const c = new RunCache(dir, 'ns1');
    expect(() => c.delete('nope')).not.toThrow();
    mkdirSync(join(dir, 'ns1'), { recursive: true });
    writeFileSync(join(dir, 'ns1', 'torn.json'), '{"a":');
    expect(c.get('torn')).toBeUndefined();
  });
});
