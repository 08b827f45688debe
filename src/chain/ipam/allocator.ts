// The order in which host-local hands out addresses, kept identical to the
// reference so a node can switch plugins without changing which address the
// next pod gets: round-robin from the address after `last_reserved_ip.<set>`,
// walking the set's ranges in order, wrapping around, skipping each range's
// gateway, until it is back where it started. Pure: a generator of candidates.
import { add, equal, type Ip } from '../../net/ip.js';
import { inRange, type Range, type RangeSet } from './config.js';

export interface Candidate {
  ip: Ip;
  range: Range;
}

export function* candidates(set: RangeSet, lastReserved?: Ip): Generator<Candidate> {
  let idx = 0;
  let cur: Ip | undefined;
  let start: Ip | undefined;
  const fromIdx = lastReserved ? set.findIndex((r) => inRange(r, lastReserved)) : -1;
  if (fromIdx >= 0) {
    idx = fromIdx;
    cur = lastReserved; // the first step below moves past it
  }
  for (;;) {
    let r = set[idx]!;
    if (cur === undefined) {
      cur = r.start;
      start = cur;
    } else {
      if (equal(cur, r.end)) {
        idx = (idx + 1) % set.length;
        r = set[idx]!;
        cur = r.start;
      } else {
        cur = add(cur, 1n);
      }
      if (start === undefined) start = cur;
      else if (equal(cur, start)) return;
    }
    if (!equal(cur, r.gateway)) yield { ip: cur, range: r };
  }
}

/** How many addresses a range set can hand out (its gateways excluded). */
export function capacity(set: RangeSet): bigint {
  return set.reduce((n, r) => n + (r.end.value - r.start.value + 1n) - (inRange(r, r.gateway) ? 1n : 0n), 0n);
}
