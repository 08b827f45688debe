// Lazy bundles: code a CNI call does not need (the command line for people,
// the agent) stays out of the start-up snapshot, which every ADD deserializes.
// scripts/build.mjs builds each as a CommonJS bundle stored in the executable
// as an asset (`lazy/<name>.cjs`); `loadBundle` compiles and evaluates it on
// first use (no code cache: see scripts/build.mjs).
// A module both the core and a bundle import is not copied into the bundle:
// it gets the core's instance (one CniError class, one log configuration).
// Outside the executable (vitest, tsc), the entry is imported as TypeScript.
//
// To add a bundle: its name in LAZY_BUNDLES (scripts/build.mjs) and its
// module's type here; its entry is src/<name>/index.ts.
import { CniError, Code } from './cni/errors.js';
import { trace } from './sys/trace.js';

export interface LazyBundles {
  cli: typeof import('./cli/index.js');
  /** `nhi-cni agent`: the node agent and @kubernetes/client-node (src/agent/index.ts). */
  agent: typeof import('./agent/index.js');
  /** The YAML library (src/yaml/index.ts): manifests, kubeconfigs, `-o yaml`; also loaded synchronously (loadBundleSync). */
  yaml: typeof import('./yaml/index.js');
  /** The log library (src/pino/index.ts), for src/log.ts's first record. */
  pino: typeof import('./pino/index.js');
}
export type BundleName = keyof LazyBundles;

/** Defined (true) by scripts/build.mjs; undefined when the TypeScript runs as is. */
declare const NHI_CNI_SEA_BUNDLES: boolean | undefined;

/** The core's modules the lazy bundles import, by path from the repository root. */
let core: Readonly<Record<string, object>> = {};
const loaded = new Map<string, Promise<unknown>>();
/** Bundles already evaluated (by either loader): evaluated once per process. */
const evaluated = new Map<string, unknown>();

/** Called once by the build's core entry (at snapshot build time): the modules the bundles share. */
export function registerCore(modules: Record<string, object>): void {
  core = Object.freeze({ ...modules });
}

/** The module of lazy bundle `name`, evaluated once per process. */
export function loadBundle<N extends BundleName>(name: N): Promise<LazyBundles[N]> {
  let p = loaded.get(name);
  if (!p) {
    p = inSea() ? Promise.resolve().then(() => fromAsset(name)) : fromSource(name);
    loaded.set(name, p);
  }
  return p as Promise<LazyBundles[N]>;
}

/** Bundles a synchronous caller may load: small ones whose callers cannot wait (parsing a manifest or a kubeconfig). */
export type SyncBundleName = 'yaml';

/** The module of lazy bundle `name`, evaluated now if it was not yet (once per process). */
export function loadBundleSync<N extends SyncBundleName>(name: N): LazyBundles[N] {
  return (inSea() ? fromAsset(name) : fromSourceSync(name)) as LazyBundles[N];
}

/**
 * For a program that bundles nhi-cni's modules itself, outside the executable
 * (the tests' L7 proxy child, bundled by esbuild into a temporary directory):
 * there the TypeScript entry cannot be found next to this module, so the
 * program imports the bundle's entry statically and hands it over here.
 */
export function provideBundle<N extends BundleName>(name: N, module: LazyBundles[N]): void {
  evaluated.set(name, module);
  loaded.set(name, Promise.resolve(module));
}

const inSea = (): boolean => typeof NHI_CNI_SEA_BUNDLES !== 'undefined' && NHI_CNI_SEA_BUNDLES;

/** Development and tests, synchronously: Node itself loads the entry (it strips the types), not the test runner. */
function fromSourceSync(name: string): unknown {
  let m = evaluated.get(name);
  if (m === undefined) {
    const { createRequire } = process.getBuiltinModule('node:module');
    m = createRequire(import.meta.url)(`./${name}/index.ts`);
    evaluated.set(name, m);
  }
  return m;
}

/** Development and tests: the TypeScript entry itself (a path esbuild does not follow). */
function fromSource(name: string): Promise<unknown> {
  const entry = `./${name}/index.js`;
  return import(entry);
}

/** What `require` means inside a bundle: the core's shared modules and Node's builtins, nothing from disk. */
function bundleRequire(id: string): unknown {
  if (id.startsWith('nhi-core:')) {
    const m = core[id.slice('nhi-core:'.length)];
    if (m) return m;
  } else {
    const m = process.getBuiltinModule(id);
    if (m) return m;
  }
  throw new CniError(Code.Internal, `lazy bundle: module ${id} is not available`, 'the build shares it with the core; rebuild (npm run build)');
}

function fromAsset(name: string): unknown {
  if (evaluated.has(name)) return evaluated.get(name);
  const sea = process.getBuiltinModule('node:sea');
  const vm = process.getBuiltinModule('node:vm');
  let source: string;
  try {
    source = sea.getAsset(`lazy/${name}.cjs`, 'utf8');
  } catch {
    throw new CniError(Code.Internal, `lazy bundle ${name} is not in this build`);
  }
  const script = new vm.Script(source, { filename: `nhi-cni:${name}` });
  const fn = script.runInThisContext() as (exports: object, require: (id: string) => unknown, module: { exports: object }) => void;
  const module = { exports: {} };
  fn(module.exports, bundleRequire, module);
  evaluated.set(name, module.exports);
  trace(`lazy bundle ${name} loaded`);
  return module.exports;
}
