// What a plugin type receives: the validated environment, the decoded config
// and its negotiated version. Built by the skel; plugin types and the chain
// modules only read it.
import type { CniEnv } from './env.js';
import type { RawConfig } from './config.js';
import type { CniVersion } from './version.js';
import { parsePrevResult, type Result } from './result.js';

export interface CniRequest {
  env: CniEnv;
  config: RawConfig;
  version: CniVersion;
  /** The exact stdin bytes, for delegating to another plugin. */
  stdin: Buffer;
}

/** prevResult when present and readable, else undefined: DEL and GC must work without it. */
export function prevResultOf(req: CniRequest): Result | undefined {
  if (req.config.prevResult === undefined) return undefined;
  try {
    return parsePrevResult(req.config.prevResult, req.version);
  } catch {
    return undefined;
  }
}
