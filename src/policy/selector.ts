// Label selector matching, exactly as metav1.LabelSelector: matchLabels AND every
// matchExpressions requirement. An empty selector selects everything.
import type { Selector, SelectorRequirement } from './model.js';

function has(labels: Record<string, string>, key: string): boolean {
  // Own keys only: a label named "constructor" must not find Object.prototype.
  return Object.hasOwn(labels, key);
}

/**
 * One requirement (k8s.io/apimachinery/pkg/labels Requirement.Matches).
 * NotIn and DoesNotExist match a pod that lacks the key; In and Exists need it.
 */
export function requirementMatches(r: SelectorRequirement, labels: Record<string, string>): boolean {
  const present = has(labels, r.key);
  switch (r.operator) {
    case 'In':
      return present && r.values.includes(labels[r.key]!);
    case 'NotIn':
      return !present || !r.values.includes(labels[r.key]!);
    case 'Exists':
      return present;
    case 'DoesNotExist':
      return !present;
  }
}

/** Whether `sel` selects an object with these labels. */
export function selects(sel: Selector, labels: Record<string, string>): boolean {
  for (const [k, v] of Object.entries(sel.matchLabels)) {
    if (!has(labels, k) || labels[k] !== v) return false;
  }
  return sel.matchExpressions.every((r) => requirementMatches(r, labels));
}

/** The selector that selects everything (`{}`). */
export function everything(): Selector {
  return { matchLabels: {}, matchExpressions: [] };
}
