// `policy stats`' L7 rows: the proxy's per-verdict samples pivoted to one row per (policy, rule).
import { describe, expect, it } from 'vitest';
import { l7Rows } from '../../src/agent/agent.js';

describe('l7Rows', () => {
  it('one row per policy and rule, allowed and denied side by side, sorted', () => {
    expect(l7Rows([
      [{ policy: 'shop/data-readers', rule: '-', verdict: 'denied' }, 3],
      [{ policy: 'shop/data-readers', rule: 'spec.ingress[0].toPorts[0].rules.http[0]', verdict: 'allowed' }, 5],
      [{ policy: 'ml/infer', rule: 'spec.egress[0].toPorts[0].rules.http[1]', verdict: 'allowed' }, 1],
      [{ policy: 'ml/infer', rule: 'spec.egress[0].toPorts[0].rules.http[1]', verdict: 'denied' }, 2],
    ])).toEqual([
      { policy: 'ml/infer', rule: 'spec.egress[0].toPorts[0].rules.http[1]', allowed: 1, denied: 2 },
      { policy: 'shop/data-readers', rule: '-', allowed: 0, denied: 3 },
      { policy: 'shop/data-readers', rule: 'spec.ingress[0].toPorts[0].rules.http[0]', allowed: 5, denied: 0 },
    ]);
  });

  it('nothing judged yet: no rows', () => {
    expect(l7Rows([])).toEqual([]);
  });
});
