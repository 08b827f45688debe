// Paths a config names (stateDir, ipam.dataDir, ipam.resolvConf, …), checked
// before they reach the filesystem: a path the kernel or Node cannot take
// (a NUL byte, a component over NAME_MAX, the whole over PATH_MAX) would
// otherwise surface as an internal error (code 100) from deep inside an ADD.
// Control characters are refused too: no operator means them, and they make
// logs and error messages lie.
import { CniError, Code } from './errors.js';

/** Linux NAME_MAX and PATH_MAX (with its terminating NUL). */
const NAME_MAX = 255;
const PATH_MAX = 4095;

/** Why `p` is not an absolute path nhi-cni will use; undefined when it is. */
export function absolutePathProblem(p: string): string | undefined {
  if (!p.startsWith('/')) return 'must be an absolute path';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(p)) return 'may not contain NUL or control characters';
  if (p.split('/').includes('..')) return 'may not contain ".."';
  if (Buffer.byteLength(p) > PATH_MAX) return `is longer than ${PATH_MAX} bytes`;
  if (p.split('/').some((c) => Buffer.byteLength(c) > NAME_MAX)) return `has a component longer than ${NAME_MAX} bytes`;
  return undefined;
}

/** A JSON path ("policy.manifests[0].metadata.name") to the first string or key holding a NUL byte. */
export function nulPath(v: unknown, root = 'config'): string | undefined {
  // Iterative: a hostile config may nest thousands of levels deep.
  const stack: [unknown, string][] = [[v, root]];
  while (stack.length > 0) {
    const [x, path] = stack.pop()!;
    if (typeof x === 'string') {
      if (x.includes('\0')) return path;
    } else if (Array.isArray(x)) {
      for (let i = x.length - 1; i >= 0; i--) stack.push([x[i], `${path}[${i}]`]);
    } else if (x !== null && typeof x === 'object') {
      for (const [k, y] of Object.entries(x)) {
        const p = /^[A-Za-z_$][\w$]*$/.test(k) ? `${path}.${k}` : `${path}[${JSON.stringify(k)}]`;
        if (k.includes('\0')) return p;
        stack.push([y, p]);
      }
    }
  }
  return undefined;
}

/** A config path, or code 7 naming the key and what is wrong with it. */
export function checkedPath(p: string, key: string): string {
  const why = absolutePathProblem(p);
  if (why) throw new CniError(Code.InvalidConfig, `${key} ${JSON.stringify(p)} ${why}`, 'an absolute path without "..", control characters or names over 255 bytes');
  return p;
}
