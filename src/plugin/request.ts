// What a plugin type implements: one handler per CNI verb, each given the
// request the skel built (src/cni/request.ts).
import type { CniRequest } from '../cni/request.js';
import type { Result } from '../cni/result.js';

export interface PluginType {
  /** The top-level config keys the type reads beyond the spec's; undefined: do not report unknown ones. */
  keys?: readonly string[];
  add(req: CniRequest): Promise<Result>;
  del(req: CniRequest): Promise<void>;
  check(req: CniRequest): Promise<void>;
  gc(req: CniRequest): Promise<void>;
  status(req: CniRequest): Promise<void>;
}
