// Code that only some commands need, kept out of the binary's start-up
// snapshot: built as a separate CommonJS bundle (scripts/build.mjs), stored in
// the single executable as an asset, and evaluated the first time a command
// asks for it. A CNI ADD never pays for it (the agent's @kubernetes/client-node
// is ~2 MB of code). Outside a single executable (node dist/main.cjs) the
// bundle is read from the file next to main.cjs.
import type * as AgentBundle from './agent/index.js';

export interface Bundles {
  agent: typeof AgentBundle;
}

const loaded = new Map<string, unknown>();

function evaluate(name: string, code: string): unknown {
  const vm = process.getBuiltinModule('node:vm') as typeof import('node:vm');
  // Bundles are self-contained: their only imports are Node's built-in modules.
  const req = (id: string): unknown => {
    const m = process.getBuiltinModule(id);
    if (m === undefined) throw Object.assign(new Error(`Cannot find module '${id}' (bundle ${name} may import only built-in modules)`), { code: 'MODULE_NOT_FOUND' });
    return m;
  };
  const module = { exports: {} as Record<string, unknown> };
  const fn = vm.runInThisContext(`(function (exports, require, module, __filename, __dirname) {${code}\n})`, { filename: `nhi-cni:${name}.cjs` }) as (...a: unknown[]) => void;
  fn(module.exports, req, module, `/nhi-cni/${name}.cjs`, '/nhi-cni');
  return module.exports;
}

export function loadBundle<K extends keyof Bundles>(name: K): Bundles[K] {
  const done = loaded.get(name);
  if (done) return done as Bundles[K];
  const sea = process.getBuiltinModule('node:sea') as typeof import('node:sea') | undefined;
  let code: string;
  if (sea?.isSea()) {
    code = sea.getAsset(`${name}.cjs`, 'utf8');
  } else {
    const fs = process.getBuiltinModule('node:fs') as typeof import('node:fs');
    const path = process.getBuiltinModule('node:path') as typeof import('node:path');
    code = fs.readFileSync(path.join(path.dirname(process.argv[1] ?? '.'), `${name}.cjs`), 'utf8');
  }
  const exports = evaluate(name, code);
  loaded.set(name, exports);
  return exports as Bundles[K];
}
