import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DIST = join(ROOT, 'dist');
export const BINARY = join(DIST, 'nhi-cni');
export const CNI_CLIENT = join(DIST, 'cni-client');
/** Debian's containernetworking-plugins: the reference Go plugins. */
export const REF_CNI_DIR = '/usr/lib/cni';
/** CNI_PATH for tests: our links first, then the reference plugins. */
export const TEST_CNI_PATH = `${DIST}:${REF_CNI_DIR}`;
