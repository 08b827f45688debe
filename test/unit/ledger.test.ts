import { mkdtempSync, rmSync, appendFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { appendLedger, readLedger, whoHeld, type LedgerEntry } from '../../src/chain/ledger.js';

const entry = (event: 'ADD' | 'DEL', time: string, containerId: string, ips: string[], pod?: string): LedgerEntry => ({
  time, event, network: 'n', containerId, ifname: 'eth0', netns: `/var/run/netns/${containerId}`, ips, ...(pod ? { pod } : {}),
});

describe('whoHeld', () => {
  const log = [
    entry('ADD', '2026-11-28T10:00:00.000Z', 'a', ['10.0.0.2/24', 'fd00::2/64'], 'prod/payments'),
    entry('DEL', '2026-11-28T11:00:00.000Z', 'a', ['10.0.0.2/24']),
    entry('ADD', '2026-11-28T11:30:00.000Z', 'b', ['10.0.0.2/24'], 'ci/build'),
  ];

  it('finds the holder at each moment, and nobody before the first ADD or between DEL and re-use', () => {
    expect(whoHeld(log, '10.0.0.2', new Date('2026-11-28T09:59:59Z'))).toEqual([]);
    expect(whoHeld(log, '10.0.0.2', new Date('2026-11-28T10:30:00Z')).map((e) => e.pod)).toEqual(['prod/payments']);
    expect(whoHeld(log, '10.0.0.2', new Date('2026-11-28T11:15:00Z'))).toEqual([]);
    expect(whoHeld(log, '10.0.0.2', new Date('2026-11-28T12:00:00Z')).map((e) => e.pod)).toEqual(['ci/build']);
  });

  it('matches IPv6 however it is spelled, and refuses what is not an address', () => {
    expect(whoHeld(log, 'fd00:0:0:0::2', new Date('2026-11-28T10:30:00Z')).map((e) => e.containerId)).toEqual(['a']);
    expect(() => whoHeld(log, '10.0.0', new Date())).toThrow(/not an IP address/);
  });
});

describe('ledger file', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nhi-ledger-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  it('appends one line per event and reads them back, skipping a torn last line', () => {
    const path = join(dir, 'sub', 'ledger.jsonl');
    appendLedger(path, entry('ADD', '2026-11-28T10:00:00.000Z', 'a', ['10.0.0.2/24']));
    appendLedger(path, entry('DEL', '2026-11-28T11:00:00.000Z', 'a', ['10.0.0.2/24']));
    appendFileSync(path, '{"time":"2026-11-28T12:00:00.000Z","event":"AD');
    expect(readLedger(path).map((e) => e.event)).toEqual(['ADD', 'DEL']);
    expect(readLedger(join(dir, 'missing.jsonl'))).toEqual([]);
  });
});
