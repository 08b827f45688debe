// npm run build: one CommonJS bundle, then a Node single executable of the
// Node pinned in package.json (node_modules/.bin/node, Node 26), then the
// links under which runtimes call the other plugin types.
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
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
  define: { NHI_CNI_VERSION: JSON.stringify(pkg.version) },
  logLevel: 'warning',
});

// The start-up snapshot holds the evaluated modules (zod, pino, ip-address and
// ours), so an ADD pays for deserializing a heap instead of evaluating them:
// about 30 ms less per ADD on the test machine, for about 10 ms more on
// VERSION, which runtimes do not call per container. The snapshot is tied to
// this exact Node build, so the binary is built with the node it embeds.
// Node warns that some builtins are "not yet fully verified" in snapshots;
// the tests run the built binary, so they cover what we use.
rmSync(join(dist, 'nhi-cni'), { force: true });
const out = execFileSync(process.execPath, ['--build-sea', join(root, 'sea-config.json')], { cwd: root, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
process.stdout.write(out);

for (const link of ['nhi-ipam', 'nhi-policy']) {
  rmSync(join(dist, link), { force: true });
  symlinkSync('nhi-cni', join(dist, link));
}
console.log(`built ${join(dist, 'nhi-cni')} (Node ${process.versions.node})`);
