import { expect } from 'vitest';
import { CniError } from '../../src/cni/errors.js';

/** Runs fn, which must throw a CniError, and returns that error. */
export function caught(fn: () => unknown): CniError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError, nothing was thrown');
}
