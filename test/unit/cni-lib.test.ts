// The helpers the benchmarks and the tests share (scripts/cni-lib.mjs).
import { describe, expect, it } from 'vitest';
import { pluginConfig, summary } from '../../scripts/cni-lib.mjs';

describe('pluginConfig: a plugin\'s config as libcni builds it', () => {
  const list = { name: 'net', cniVersion: '1.0.0' };
  it('injects the list\'s name and version, prevResult, and only the declared capabilities', () => {
    const c = pluginConfig(list, { type: 'portmap', capabilities: { portMappings: true, bandwidth: false } }, { ips: [] }, { portMappings: [1], bandwidth: { x: 1 }, mac: 'm' });
    expect(c).toEqual({ type: 'portmap', capabilities: { portMappings: true, bandwidth: false }, name: 'net', cniVersion: '1.0.0', runtimeConfig: { portMappings: [1] }, prevResult: { ips: [] } });
  });
  it('no runtimeConfig when the runtime has none of the declared capabilities', () => {
    expect(pluginConfig(list, { type: 'x', capabilities: { mac: true } }, undefined, {})).not.toHaveProperty('runtimeConfig');
  });
});

describe('summary: median and nearest-rank percentiles', () => {
  it('of 1..100: median 50.5, p90 90, p99 99', () => {
    const s = summary(Array.from({ length: 100 }, (_, i) => 100 - i));
    expect(s).toEqual({ median: 50.5, p90: 90, p99: 99, min: 1, max: 100, n: 100 });
  });
  it('with fewer than 100 samples p99 is the maximum; an empty sample has none', () => {
    expect(summary([3, 1, 2]).p99).toBe(3);
    expect(summary([]).median).toBeUndefined();
  });
});
