import { describe, expect, it } from 'vitest';
import type { Selector, SelectorRequirement } from '../../src/policy/model.js';
import { everything, requirementMatches, selects } from '../../src/policy/selector.js';

const sel = (matchLabels: Record<string, string> = {}, matchExpressions: SelectorRequirement[] = []): Selector => ({ matchLabels, matchExpressions });
const req = (key: string, operator: SelectorRequirement['operator'], values: string[] = []): SelectorRequirement => ({ key, operator, values });

describe('selects', () => {
  it('an empty selector matches everything, even no labels', () => {
    expect(selects(everything(), {})).toBe(true);
    expect(selects(sel(), { app: 'x' })).toBe(true);
  });

  const pod = { app: 'web', tier: 'front', env: 'prod' };
  const cases: [string, Selector, Record<string, string>, boolean][] = [
    ['matchLabels equal', sel({ app: 'web' }), pod, true],
    ['matchLabels all must match', sel({ app: 'web', tier: 'back' }), pod, false],
    ['matchLabels missing key', sel({ team: 'a' }), pod, false],
    ['matchLabels value is case-sensitive', sel({ app: 'Web' }), pod, false],
    ['matchLabels empty value vs missing key', sel({ x: '' }), pod, false],
    ['matchLabels empty value present', sel({ x: '' }), { x: '' }, true],
    ['In hit', sel({}, [req('env', 'In', ['dev', 'prod'])]), pod, true],
    ['In miss', sel({}, [req('env', 'In', ['dev'])]), pod, false],
    ['In needs the key', sel({}, [req('zone', 'In', ['a'])]), pod, false],
    ['NotIn hit', sel({}, [req('env', 'NotIn', ['prod'])]), pod, false],
    ['NotIn miss', sel({}, [req('env', 'NotIn', ['dev'])]), pod, true],
    ['NotIn matches when the key is absent', sel({}, [req('zone', 'NotIn', ['a'])]), pod, true],
    ['Exists', sel({}, [req('tier', 'Exists')]), pod, true],
    ['Exists absent', sel({}, [req('zone', 'Exists')]), pod, false],
    ['DoesNotExist absent', sel({}, [req('zone', 'DoesNotExist')]), pod, true],
    ['DoesNotExist present', sel({}, [req('app', 'DoesNotExist')]), pod, false],
    ['labels AND expressions, both hold', sel({ app: 'web' }, [req('env', 'In', ['prod'])]), pod, true],
    ['labels AND expressions, expression fails', sel({ app: 'web' }, [req('env', 'NotIn', ['prod'])]), pod, false],
    ['labels AND expressions, labels fail', sel({ app: 'db' }, [req('env', 'In', ['prod'])]), pod, false],
    ['every expression must hold', sel({}, [req('app', 'Exists'), req('zone', 'Exists')]), pod, false],
    ['prototype keys are not labels (Exists)', sel({}, [req('constructor', 'Exists')]), {}, false],
    ['prototype keys are not labels (NotIn)', sel({}, [req('toString', 'NotIn', ['x'])]), {}, true],
    ['prototype keys are not labels (matchLabels)', sel({ hasOwnProperty: 'x' }), {}, false],
  ];
  it.each(cases)('%s', (_name, s, labels, want) => {
    expect(selects(s, labels)).toBe(want);
  });
});

describe('requirementMatches', () => {
  it('In with an empty value list matches nothing; NotIn with one matches everything', () => {
    expect(requirementMatches(req('a', 'In'), { a: '1' })).toBe(false);
    expect(requirementMatches(req('a', 'NotIn'), { a: '1' })).toBe(true);
  });
});
