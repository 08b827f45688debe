// The L7 proxy alone in a process, so a test can read its peak memory
// (/proc/<pid>/status VmHWM) while bodies stream through it. Bundled by the
// test with esbuild. argv[2]: JSON { policies (YAML text), identities
// ({ ip: Identity }), dest ({ ip, port }, or { original: 4 } for an egress
// listener that reads each connection's SO_ORIGINAL_DST), transparentTo
// (destinations reached from the requesting pod's own address), transparent
// (also listen on dest's own address: the Service path), onPodAddress
// (listeners on those pod addresses only: the Service path of egress), bind ({ host, port }, default
// 127.0.0.1 and any port) }. Prints { port } once listening; deny lines go to
// stderr as JSON. Run with --expose-gc: on SIGUSR2 it collects garbage and
// prints { retained } (heap used + array buffers, bytes), what it still holds.
import { provideBundle } from '../../src/lazy.js';
import { L7Proxy } from '../../src/l7/proxy.js';
import * as yaml from '../../src/yaml/index.js';
import type { Identity } from '../../src/policy/model.js';
import { parseManifestText } from '../../src/policy/parse.js';

// Bundled by esbuild into a temporary directory: the YAML bundle is handed over, not looked up next to src/lazy.ts.
provideBundle('yaml', yaml);
const cfg = JSON.parse(process.argv[2]!) as {
  policies: string; identities: Record<string, Identity>; dest: { ip: string; port: number } | { original: 4 | 6 }; bind?: { host: string; port: number };
  transparentTo?: string[]; connectTimeoutMs?: number; transparent?: boolean; onPodAddress?: { ip: string; port: number }[];
};
const policies = parseManifestText(cfg.policies, 'child.yaml', { l7: 'proxy' });
const proxy = new L7Proxy({
  identify: (ip) => (Object.hasOwn(cfg.identities, ip) ? cfg.identities[ip] : undefined),
  policies: () => policies,
  onDeny: (r) => process.stderr.write(`${JSON.stringify(r)}\n`),
  upstreamFrom: (_src, dst) => (cfg.transparentTo?.includes(dst.ip) ? 'source' : 'node'),
  ...(cfg.connectTimeoutMs ? { connectTimeoutMs: cfg.connectTimeoutMs } : {}),
});
const { port } = await proxy.listen(cfg.dest, cfg.bind ?? { host: '127.0.0.1', port: 0 }, { transparent: cfg.transparent === true });
// Listeners on pod addresses only (the Service path of egress rules).
for (const d of cfg.onPodAddress ?? []) await proxy.listen(d, null, { transparent: true });
process.stdout.write(`${JSON.stringify({ port })}\n`);
// Twice, a moment apart: V8 frees buffers' backing stores on a background
// thread after the collection, which a loaded machine runs late.
process.on('SIGUSR2', async () => {
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
  gc?.();
  await new Promise((r) => setTimeout(r, 50));
  const m = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ retained: m.heapUsed + m.arrayBuffers })}\n`);
});
process.stdin.resume();
process.stdin.on('end', () => process.exit(0));
