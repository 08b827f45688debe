// The parts of a plugin configuration every verb needs before a plugin type is
// chosen (SPEC.md section 3 "Network configuration"): decoded JSON, the network
// name, the version. Plain code, no zod, so that the cheap paths stay cheap.
import { CniError, Code } from './errors.js';
import { nulPath } from './paths.js';

export const MAX_STDIN_BYTES = 1 << 20;

// The network name becomes a directory under dataDir: the reference rule
// (alphanumeric first, then [a-zA-Z0-9_.-]) already rules out "/" and a
// leading "."; ".." anywhere is refused on top, and so are names too long
// to be one path component.
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export type RawConfig = Record<string, unknown> & { name: string; type?: unknown; cniVersion?: unknown };

export function decodeConfig(stdin: Buffer): RawConfig {
  let raw: unknown;
  const text = stdin.toString('utf8');
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CniError(Code.DecodeFailure, 'error unmarshalling network config', (e as Error).message);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new CniError(Code.DecodeFailure, 'error unmarshalling network config', 'the config on stdin must be a JSON object');
  }
  const conf = raw as Record<string, unknown>;
  const name = conf.name;
  if (name === undefined || name === '') throw new CniError(Code.InvalidConfig, 'missing network name');
  if (typeof name !== 'string') throw new CniError(Code.InvalidConfig, 'invalid network name', '"name" must be a string');
  const why = validateNetworkName(name);
  if (why) throw new CniError(Code.InvalidConfig, `invalid network name ${JSON.stringify(name)}`, why);
  // A NUL byte is never meaningful in a config, and in a path or a name it
  // makes Node's fs throw where an internal error would be the answer.
  // JSON can only carry it escaped, so the walk runs only when the text has one.
  if (/\\u0000/i.test(text)) {
    const at = nulPath(conf);
    if (at) throw new CniError(Code.InvalidConfig, `${at} contains a NUL byte`, 'no string of a network configuration may hold NUL');
  }
  return conf as RawConfig;
}

export function validateNetworkName(name: string): string | undefined {
  if (name.length > 255) return 'a network name is at most 255 characters';
  if (!NETWORK_NAME.test(name) || name.includes('..')) {
    return 'a network name starts with a letter or digit, holds only letters, digits, "_", "." and "-", and never ".."';
  }
  return undefined;
}
