// Unknown keys where security depends on the configuration: a typo such as
// `"policy": {"dirs": ...}` must not quietly turn enforcement off, so these
// sections refuse keys they do not know and name the one probably meant.
// Plain code, no zod: the skel checks the `log` section before loading more.
import { CniError, Code } from './errors.js';

/** Levenshtein distance; keys are short, so the O(n*m) table is nothing. */
export function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length]!;
}

/** The valid key closest to `key` (case-insensitively), if it is close enough to be a typo. */
export function closest(key: string, valid: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const v of valid) {
    const d = editDistance(key.toLowerCase(), v.toLowerCase());
    if (d < bestD) [best, bestD] = [v, d];
  }
  // Up to a third of the key's length (at least 2) wrong: "dirs", "levle", "kubeConfig".
  return best !== undefined && bestD <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** The keys of `obj` that are not in `valid`, in their order. */
export function unknownKeys(obj: object, valid: readonly string[]): string[] {
  return Object.keys(obj).filter((k) => !valid.includes(k));
}

/**
 * Code 7 for the first unknown key of section `where` (e.g. "policy"): names
 * the key and the closest valid key, and lists the valid ones.
 */
export function refuseUnknownKeys(obj: object, valid: readonly string[], where: string): void {
  const bad = unknownKeys(obj, valid);
  if (!bad.length) return;
  const key = bad[0]!;
  const near = closest(key, valid);
  throw new CniError(
    Code.InvalidConfig,
    `unknown key ${JSON.stringify(key)} in ${where}${near ? `: did you mean ${JSON.stringify(near)}?` : ''}`,
    `${where} knows ${valid.join(', ')}${bad.length > 1 ? `; also unknown: ${bad.slice(1).map((k) => JSON.stringify(k)).join(', ')}` : ''}`,
  );
}
