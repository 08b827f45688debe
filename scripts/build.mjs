// npm run build: the core bundle (CommonJS, evaluated into the start-up
// snapshot), the lazy bundles (SEA assets evaluated on demand, see
// src/lazy.ts), then a Node single executable of the Node pinned in
// package.json (node_modules/.bin/node, Node 26), then the links under which
// runtimes call the other plugin types.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dist = join(root, 'dist');

// Lazy bundles: code an ADD does not need, kept out of the start-up snapshot
// and evaluated only when asked for (`loadBundle('<name>')`, src/lazy.ts).
// Bundle <name> is src/<name>/index.ts and what it imports; a module the core
// bundle already holds (the CNI path, zod, ...) is not copied but shared: the
// lazy bundle gets the core's very instance of it. An entry whose file does
// not exist (yet) is skipped. To add one: its name here, and its type in
// LazyBundles (src/lazy.ts).
const LAZY_BUNDLES = ['cli', 'agent', 'yaml', 'pino'];

if (process.versions.node !== pkg.engines.node) {
  console.error(`build: running on Node ${process.versions.node}, but package.json pins ${pkg.engines.node}; run it through npm (npm run build) so node_modules/.bin/node is used`);
  process.exit(1);
}

const common = {
  bundle: true,
  platform: 'node',
  target: `node${pkg.engines.node.split('.')[0]}`,
  format: 'cjs',
  legalComments: 'none',
  // Minified, the snapshot's heap is ≈3 MB smaller: measured 5–12 ms less per
  // ADD, VERSION and nhi-ipam call and ≈8 MB less RSS (npm run bench). Our
  // errors carry their own messages (CniError); no code depends on names.
  minify: true,
  define: {
    NHI_CNI_VERSION: JSON.stringify(pkg.version),
    // The one copy of the default conflist of `nhi-cni install`.
    NHI_CNI_DEFAULT_CONFLIST: JSON.stringify(readFileSync(join(root, 'conflists/10-nhi-cni.conflist'), 'utf8')),
    // src/lazy.ts reads its bundles from the executable's assets.
    NHI_CNI_SEA_BUNDLES: 'true',
    // Only src/lazy.ts's loader for sources (tests, development) reads it,
    // which the executable never runs; defined, CommonJS output has no warning.
    'import.meta.url': 'undefined',
  },
  logLevel: 'warning',
};

rmSync(join(dist, 'lazy'), { recursive: true, force: true });
mkdirSync(join(dist, 'lazy'), { recursive: true });

// 1. Which modules the core holds: the snapshot entry's module graph.
const snapshotEntry = join(root, 'src/snapshot.ts');
const probe = await build({ ...common, entryPoints: [snapshotEntry], write: false, metafile: true, outfile: join(dist, 'main.cjs') });
const coreModules = new Set(Object.keys(probe.metafile.inputs));

// 2. The lazy bundles, each importing the core's modules from the core (by
// their path relative to the repository: `require("nhi-core:src/cni/errors.ts")`).
const shared = new Set();
// Sharing a module puts its whole namespace into the core (registerCore below
// imports it with `import * as`), which undoes the core's tree-shaking: a
// lazy bundle sharing zod's modules brought all of zod's core API and every
// locale back into the snapshot. zod, and the CNI path's door to it
// (src/cni/zod.ts, `export *` of zod/mini), are copied into a lazy bundle
// that imports them instead; its copy keeps zod's configuration (English
// messages) on globalThis, as the core's does.
const NOT_SHARED = /^(node_modules\/zod\/|src\/cni\/zod\.ts$)/;
const lazy = [];
for (const name of LAZY_BUNDLES) {
  const entry = join(root, 'src', name, 'index.ts');
  if (!existsSync(entry)) {
    console.log(`lazy bundle ${name}: skipped (no src/${name}/index.ts)`);
    continue;
  }
  const outfile = join(dist, 'lazy', `${name}.cjs`);
  await build({
    ...common,
    entryPoints: [entry],
    outfile,
    plugins: [{
      name: 'share-core',
      setup(b) {
        b.onResolve({ filter: /.*/ }, async (args) => {
          if (args.pluginData === 'share-core' || args.kind === 'entry-point') return undefined;
          const r = await b.resolve(args.path, { kind: args.kind, importer: args.importer, resolveDir: args.resolveDir, pluginData: 'share-core' });
          if (r.errors.length || r.external || !r.path) return undefined;
          const rel = relative(root, r.path);
          if (!coreModules.has(rel) || NOT_SHARED.test(rel)) return undefined;
          shared.add(rel);
          return { path: `nhi-core:${rel}`, external: true };
        });
      },
    }],
  });
  // The bundle as the loader runs it: one function of (exports, require, module).
  // No V8 code cache goes with it: V8 accepts a cache only in a process
  // started from the very snapshot that made it, and two builds of the same
  // snapshot differ (a cache made by node, by another snapshot SEA or by an
  // identical rebuild was rejected). Compiling the CLI's 70 KB costs ≈7 ms.
  const source = `(function (exports, require, module) {${readFileSync(outfile, 'utf8')}\n})`;
  writeFileSync(outfile, source);
  lazy.push({ name, source: outfile });
}

// 3. The core bundle: the snapshot entry, plus the table of the modules the
// lazy bundles share (src/lazy.ts registerCore), evaluated at build time too.
const ids = [...shared].sort();
const coreEntry = [
  `import ${JSON.stringify(`./${relative(root, snapshotEntry)}`)};`,
  `import { registerCore } from './src/lazy.ts';`,
  ...ids.map((rel, i) => `import * as m${i} from ${JSON.stringify(`./${rel}`)};`),
  `registerCore({${ids.map((rel, i) => `${JSON.stringify(rel)}: m${i}`).join(', ')}});`,
].join('\n');
const core = await build({
  ...common,
  stdin: { contents: coreEntry, resolveDir: root, sourcefile: 'core-entry.js', loader: 'js' },
  outfile: join(dist, 'main.cjs'),
  metafile: true,
});
const grew = Object.keys(core.metafile.inputs).filter((m) => !coreModules.has(m) && m !== 'core-entry.js');
if (grew.length) throw new Error(`build: sharing modules with the lazy bundles pulled new modules into the core: ${grew.join(', ')}`);

// The start-up snapshot holds the evaluated modules (zod, execa, ip-address and
// ours; yaml and pino are lazy bundles), so an ADD pays for deserializing a
// heap instead of evaluating them: about 30 ms less per ADD on the test
// machine, for about 10 ms more on VERSION, which runtimes do not call per
// container. The snapshot is tied to this exact Node build, so the binary is
// built with the node it embeds.
// Node warns that some builtins are "not yet fully verified" in snapshots;
// the tests run the built binary, so they cover what we use.
// Built under a temporary name and renamed into place, so that a test or a
// benchmark running the old binary never finds it missing or half-written.
const seaConfig = JSON.parse(readFileSync(join(root, 'sea-config.json'), 'utf8'));
const assets = {};
for (const b of lazy) assets[`lazy/${b.name}.cjs`] = b.source;
const tmpConfig = join(dist, `.sea-config.${process.pid}.json`);
const tmpBinary = join(dist, `.nhi-cni.${process.pid}`);
writeFileSync(tmpConfig, JSON.stringify({ ...seaConfig, main: join(root, seaConfig.main), output: tmpBinary, assets: { ...seaConfig.assets, ...assets } }));
try {
  const out = execFileSync(process.execPath, ['--build-sea', tmpConfig], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  process.stdout.write(out.replace(tmpConfig, 'sea-config.json').replace(tmpBinary, join(dist, 'nhi-cni')));
  renameSync(tmpBinary, join(dist, 'nhi-cni'));
} finally {
  rmSync(tmpConfig, { force: true });
  rmSync(tmpBinary, { force: true });
}

for (const link of ['nhi-ipam', 'nhi-policy']) {
  const tmpLink = join(dist, `.${link}.${process.pid}`);
  rmSync(tmpLink, { force: true });
  symlinkSync('nhi-cni', tmpLink);
  renameSync(tmpLink, join(dist, link));
}
const size = (f) => `${Math.round(readFileSync(f).length / 1024)} KB`;
console.log(`built ${join(dist, 'nhi-cni')} (Node ${process.versions.node}): core ${size(join(dist, 'main.cjs'))}${lazy.map((b) => `, lazy ${b.name} ${size(b.source)}`).join('')}; ${ids.length} core modules shared`);
