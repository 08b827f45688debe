// The parts of a plugin configuration every verb needs before a plugin type is
// chosen (SPEC.md section 3 "Network configuration"): decoded JSON, the network
// name, the version. Plain code, no zod, so that the cheap paths stay cheap.
import { CniError, Code } from './errors.js';

export const MAX_STDIN_BYTES = 1 << 20;

// The network name becomes a directory under dataDir: the reference rule
// (alphanumeric first, then [a-zA-Z0-9_.-]) already rules out "/" and a
// leading "."; ".." anywhere is refused on top, and so are names too long
// to be one path component.
const NETWORK_NAME = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;

export type RawConfig = Record<string, unknown> & { name: string; type?: unknown; cniVersion?: unknown };

export function decodeConfig(stdin: Buffer): RawConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(stdin.toString('utf8'));
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
  return conf as RawConfig;
}

export function validateNetworkName(name: string): string | undefined {
  if (name.length > 255) return 'a network name is at most 255 characters';
  if (!NETWORK_NAME.test(name) || name.includes('..')) {
    return 'a network name starts with a letter or digit, holds only letters, digits, "_", "." and "-", and never ".."';
  }
  return undefined;
}
