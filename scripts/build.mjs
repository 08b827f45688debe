// npm run build: one CommonJS bundle, then a Node single executable of the
// Node pinned in package.json (node_modules/.bin/node, Node 26), then the
// links under which runtimes call the other plugin types.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const dist = join(root, 'dist');

if (process.versions.node !== pkg.engines.node) {
  console.error(`build: running on Node ${process.versions.node}, but package.json pins ${pkg.engines.node}; run it through npm (npm run build) so node_modules/.bin/node is used`);
  process.exit(1);
}

mkdirSync(dist, { recursive: true });
await build({
  // The snapshot entry evaluates every module at build time (see src/snapshot.ts).
  entryPoints: [join(root, 'src/snapshot.ts')],
  bundle: true,
  platform: 'node',
  target: `node${pkg.engines.node.split('.')[0]}`,
  format: 'cjs',
  outfile: join(dist, 'main.cjs'),
  legalComments: 'none',
  // Minified, the snapshot's heap is ≈3 MB smaller: measured 5–12 ms less per
  // ADD, VERSION and nhi-ipam call and ≈8 MB less RSS (npm run bench). Our
  // errors carry their own messages (CniError); no code depends on names.
  minify: true,
  define: {
    NHI_CNI_VERSION: JSON.stringify(pkg.version),
    // The one copy of the default conflist of `nhi-cni install`.
    NHI_CNI_DEFAULT_CONFLIST: JSON.stringify(readFileSync(join(root, 'conflists/10-nhi-cni.conflist'), 'utf8')),
  },
  logLevel: 'warning',
});

// The agent (`nhi-cni agent`, with @kubernetes/client-node) is a bundle of its
// own, stored in the executable as the SEA asset "agent.cjs" and evaluated
// only by that command (src/bundle.ts): it is not in the start-up snapshot,
// so a CNI ADD neither loads nor deserializes it.
await build({
  entryPoints: [join(root, 'src/agent/index.ts')],
  bundle: true,
  platform: 'node',
  target: `node${pkg.engines.node.split('.')[0]}`,
  format: 'cjs',
  outfile: join(dist, 'agent.cjs'),
  legalComments: 'none',
  minify: true,
  logLevel: 'warning',
});

// The start-up snapshot holds the evaluated modules (zod, pino, ip-address and
// ours), so an ADD pays for deserializing a heap instead of evaluating them:
// about 30 ms less per ADD on the test machine, for about 10 ms more on
// VERSION, which runtimes do not call per container. The snapshot is tied to
// this exact Node build, so the binary is built with the node it embeds.
// Node warns that some builtins are "not yet fully verified" in snapshots;
// the tests run the built binary, so they cover what we use.
// Built under a temporary name and renamed into place, so that a test or a
// benchmark running the old binary never finds it missing or half-written.
const seaConfig = JSON.parse(readFileSync(join(root, 'sea-config.json'), 'utf8'));
const tmpConfig = join(dist, `.sea-config.${process.pid}.json`);
const tmpBinary = join(dist, `.nhi-cni.${process.pid}`);
const assets = Object.fromEntries(Object.entries(seaConfig.assets ?? {}).map(([k, v]) => [k, join(root, v)]));
writeFileSync(tmpConfig, JSON.stringify({ ...seaConfig, main: join(root, seaConfig.main), output: tmpBinary, assets }));
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
console.log(`built ${join(dist, 'nhi-cni')} (Node ${process.versions.node})`);
