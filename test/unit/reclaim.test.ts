// The leak verdict on attachment records, hostile ones included: only proof
// (another boot, or veth and namespace gone past the grace period) is "leaked".
import { describe, expect, it } from 'vitest';
import { judge, netnsPathState } from '../../src/chain/reclaim.js';
import type { AttachmentRecord } from '../../src/chain/state.js';

const BOOT = '11111111-1111-4111-8111-111111111111';
const ctx = { bootId: BOOT, now: Date.parse('2026-12-02T01:00:00Z'), graceMs: 60_000 };
const rec = (over: Partial<AttachmentRecord> = {}): AttachmentRecord => ({
  containerId: 'c', ifname: 'eth0', netns: '/tmp/nhi-reclaim-unit-no-such-netns', bridge: 'nhi0', hostVeth: 'veth0badf00d',
  ips: ['10.0.0.2/24'], created: '2026-12-02T00:50:00Z', boot: BOOT, ...over,
});

describe('judge', () => {
  it('leaked only on proof', () => {
    expect(judge(rec(), ctx)).toMatchObject({ state: 'leaked', reason: 'netns-gone' });
    expect(judge(rec({ boot: '22222222-2222-4222-8222-222222222222', created: '2026-12-02T00:59:59Z' }), ctx)).toMatchObject({ state: 'leaked', reason: 'previous-boot' });
    // An older record without a boot id is judged by veth and namespace.
    const { boot: _, ...noBoot } = rec();
    expect(judge(noBoot as AttachmentRecord, ctx)).toMatchObject({ state: 'leaked', reason: 'netns-gone' });
  });

  it('alive or unknown otherwise', () => {
    expect(judge(undefined, ctx)).toMatchObject({ state: 'unknown', reason: 'no-record' });
    expect(judge(rec({ created: '2026-12-02T00:59:30Z' }), ctx)).toMatchObject({ state: 'live', reason: 'recent' });
    expect(judge(rec({ created: 'not a time' }), ctx)).toMatchObject({ state: 'live', reason: 'recent' });
    expect(judge(rec({ netns: '/proc/self/ns/net' }), ctx)).toMatchObject({ state: 'live', reason: 'netns-present' });
    expect(judge(rec({ netns: '/nonexistent-dir-nhi/x' }), ctx)).toMatchObject({ state: 'unknown', reason: 'netns-unverifiable' });
    expect(judge(rec({ netns: 'relative/x' }), ctx)).toMatchObject({ state: 'unknown', reason: 'netns-unverifiable' });
    // Unreadable boot id: no record is judged by boot.
    expect(judge(rec({ boot: 'x', created: '2026-12-02T00:59:59Z' }), { ...ctx, bootId: undefined })).toMatchObject({ state: 'live', reason: 'recent' });
  });

  it('a hostile record cannot point the veth test elsewhere', () => {
    for (const hostVeth of ['../../../../etc', 'lo', 'veth../x', '', 'vethAAAAAAAA']) {
      expect(judge(rec({ hostVeth }), ctx), hostVeth).toMatchObject({ state: 'unknown', reason: 'bad-record' });
    }
    expect(judge(rec({ netns: 42 as unknown as string }), ctx)).toMatchObject({ state: 'unknown', reason: 'bad-record' });
  });

  it('namespace paths', () => {
    expect(netnsPathState('/proc/self/ns/net')).toBe('present');
    expect(netnsPathState('/proc/999999999/ns/net')).toBe('gone');
    expect(netnsPathState('/tmp/nhi-no-such-ns')).toBe('gone');
    expect(netnsPathState('/no-such-dir-nhi/ns')).toBe('unverifiable');
    expect(netnsPathState('/tmp/a\0b')).toBe('unverifiable');
  });
});
