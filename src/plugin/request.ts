// What a plugin type receives: the validated environment, the decoded config
// and its negotiated version. Built by the skel; plugin types only read it.
import type { CniEnv } from '../cni/env.js';
import type { RawConfig } from '../cni/config.js';
import type { CniVersion } from '../cni/version.js';
import type { Result } from '../cni/result.js';

export interface CniRequest {
  env: CniEnv;
  config: RawConfig;
  version: CniVersion;
  /** The exact stdin bytes, for delegating to another plugin. */
  stdin: Buffer;
}

export interface PluginType {
  /** The top-level config keys the type reads beyond the spec's; undefined: do not report unknown ones. */
  keys?: readonly string[];
  add(req: CniRequest): Promise<Result>;
  del(req: CniRequest): Promise<void>;
  check(req: CniRequest): Promise<void>;
  gc(req: CniRequest): Promise<void>;
  status(req: CniRequest): Promise<void>;
}
