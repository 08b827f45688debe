// What a plugin type receives: the validated environment, the decoded config
// and its negotiated version. Built by the skel; plugin types and the chain
// modules only read it.
import type { CniEnv } from './env.js';
import type { RawConfig } from './config.js';
import type { CniVersion } from './version.js';

export interface CniRequest {
  env: CniEnv;
  config: RawConfig;
  version: CniVersion;
  /** The exact stdin bytes, for delegating to another plugin. */
  stdin: Buffer;
}
