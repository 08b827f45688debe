// A runtime's retried ADD through nhi-ipam answered as the reference
// host-local answers it: refused ("duplicate allocation"), touching nothing,
// also when the retries run at once and with a 255-character id. Returning
// the held address instead would let a main plugin that runs IPAM first
// (ptp) release it when its own step fails on the retry, while the first
// attachment is still wired. IPAM touches only files.
import { readFileSync } from 'node:fs';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { filesIn, ipamConfig, NHI_IPAM, REF_HOST_LOCAL, runIpam, runIpamAsync } from '../helpers/ipam.js';
import { Scratch } from '../helpers/plugin.js';

let scratch: Scratch;
beforeEach(() => {
  scratch = new Scratch();
});
afterEach(() => scratch.cleanup());

const addressFiles = (dir: string) => filesIn(dir).filter((f) => /^[0-9a-f]*[.:]/.test(f) && !f.startsWith('last_reserved_ip'));

describe.each([['nhi-ipam', NHI_IPAM], ['the reference host-local', REF_HOST_LOCAL]])('a retried ADD through %s', (_, binary) => {
  const conf = () => ipamConfig({ name: 'retry', dataDir: scratch.path('d'), ipam: { ranges: [[{ subnet: '10.22.0.0/28' }]] } });

  it('8 ADDs of one attachment at once: one succeeds, the others are refused; one reservation, its owner\'s', async () => {
    const runs = await Promise.all(Array.from({ length: 8 }, () => runIpamAsync(binary, 'ADD', conf(), 'retried')));
    const ok = runs.filter((r) => r.status === 0);
    expect(ok).toHaveLength(1);
    for (const r of runs.filter((x) => x.status !== 0)) expect(r.json.msg).toMatch(/has been allocated to retried, duplicate allocation is not allowed/);
    const files = addressFiles(scratch.path('d/retry'));
    expect(files).toEqual([ok[0]!.json.ips[0].address.split('/')[0]]);
    expect(readFileSync(scratch.path('d/retry', files[0]!), 'utf8')).toBe('retried\r\neth0');
    expect(runIpam(binary, 'ADD', conf(), 'other').json.ips[0].address).not.toBe(ok[0]!.json.ips[0].address);
  });

  it('a 255-character container id: ADD, a refused retry, CHECK, DEL', () => {
    const id = `c${'0123456789abcdef'.repeat(16)}`.slice(0, 255);
    const a = runIpam(binary, 'ADD', conf(), id);
    expect(a.status, a.stdout).toBe(0);
    expect(runIpam(binary, 'ADD', conf(), id).status).toBe(1);
    expect(runIpam(binary, 'CHECK', { ...conf(), prevResult: a.json }, id).status).toBe(0);
    expect(runIpam(binary, 'DEL', conf(), id).status).toBe(0);
    expect(addressFiles(scratch.path('d/retry'))).toEqual([]);
  });
});
