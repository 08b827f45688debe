// podOfArgs: the pod a log line names, from CNI_ARGS, never anything shaped
// unlike a Kubernetes name (a forged value must not forge log lines).
import { describe, expect, it } from 'vitest';
import { podOfArgs } from '../../src/cni/args.js';

describe('podOfArgs', () => {
  it('reads K8S_POD_NAMESPACE and K8S_POD_NAME in any order', () => {
    expect(podOfArgs('IgnoreUnknown=1;K8S_POD_NAMESPACE=prod;K8S_POD_NAME=api-7d4')).toBe('prod/api-7d4');
    expect(podOfArgs('K8S_POD_NAME=a.b;K8S_POD_NAMESPACE=x')).toBe('x/a.b');
  });
  it('nothing without both, or with a value that is not a name', () => {
    expect(podOfArgs('')).toBeUndefined();
    expect(podOfArgs('K8S_POD_NAME=a')).toBeUndefined();
    for (const bad of ['a\nb', 'a b', '../x', '', 'x'.repeat(254), '-x', 'a"}']) {
      expect(podOfArgs(`K8S_POD_NAMESPACE=ns;K8S_POD_NAME=${bad}`), JSON.stringify(bad)).toBeUndefined();
    }
  });
});
