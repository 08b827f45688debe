// Drives a conflist the way a runtime does: through libcni (cni-client) for
// the versions it speaks, or directly for 1.1.0 (Debian's libcni stops at
// 1.0.0), keeping the ADD result to pass as prevResult to CHECK and DEL.
import { writeFileSync } from 'node:fs';
import type { Netns } from './netns.js';
import { Runtime, type Run, type Scratch } from './plugin.js';
import { direct, pluginConfig, type chainConflist } from './chain.js';

type Conflist = ReturnType<typeof chainConflist>;

export interface Driver {
  add(pod: Netns | string, env?: Record<string, string>): Run;
  check(pod: Netns | string): Run;
  del(pod: Netns | string): Run;
  containerId(pod: Netns | string): string;
}

const pathOf = (pod: Netns | string) => (typeof pod === 'string' ? pod : pod.path);

const id = (pod: Netns | string) => `ctr-${pathOf(pod).split('/').pop()}`;

export function libcniDriver(scratch: Scratch, node: Netns, list: Conflist, env: Record<string, string>): Driver {
  const rt = new Runtime(scratch, node);
  rt.writeConflist(list);
  return {
    add: (pod, extra = {}) => rt.run('add', list.name, pod, { ...env, CNI_CONTAINERID: id(pod), ...extra }),
    check: (pod) => rt.run('check', list.name, pod, { ...env, CNI_CONTAINERID: id(pod) }),
    del: (pod) => rt.run('del', list.name, pod, { ...env, CNI_CONTAINERID: id(pod) }),
    containerId: id,
  };
}

/** A one-plugin list run directly, as a 1.1.0 runtime would. */
export function directDriver(node: Netns, list: Conflist, env: Record<string, string>): Driver {
  const results = new Map<string, unknown>();
  const call = (verb: string, pod: Netns | string, prev?: unknown, extra: Record<string, string> = {}) =>
    direct({ node, verb, config: pluginConfig(list, 0, prev), containerId: id(pod), netns: pathOf(pod), env: { ...env, ...extra } });
  return {
    add(pod, extra) {
      const r = call('ADD', pod, undefined, extra);
      if (r.status === 0) results.set(id(pod), r.json);
      return r;
    },
    check: (pod) => call('CHECK', pod, results.get(id(pod))),
    del(pod) {
      const r = call('DEL', pod, results.get(id(pod)));
      if (r.status === 0) results.delete(id(pod));
      return r;
    },
    containerId: id,
  };
}

export function writeJson(path: string, v: unknown): void {
  writeFileSync(path, JSON.stringify(v, null, 2));
}
