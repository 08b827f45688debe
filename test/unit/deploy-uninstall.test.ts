// deploy/nhi-cni-uninstall.yaml: `nhi-cni uninstall --purge` on every node. Its
// flags must be ones the command accepts, and every path uninstall reads or
// removes must be mounted at the node's own path.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseAllDocuments } from 'yaml';
import { describe, expect, it } from 'vitest';
import { uninstallCommand } from '../../src/cli/uninstall.js';
import { ROOT } from '../helpers/paths.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
const docs = parseAllDocuments(readFileSync(join(ROOT, 'deploy/nhi-cni-uninstall.yaml'), 'utf8')).map((d) => d.toJS() as any);

describe('deploy/nhi-cni-uninstall.yaml', () => {
  it('runs uninstall --purge with flags it accepts, in the node network namespace, with the node paths mounted', () => {
    expect(docs.map((d) => d.kind)).toEqual(['DaemonSet']);
    const pod = docs[0].spec.template.spec;
    expect(pod.hostNetwork).toBe(true);
    expect(pod.hostPID).toBe(true);
    const c = pod.initContainers[0];
    expect(c.command.slice(0, 3)).toEqual(['/nhi-cni', 'uninstall', '--purge']);
    const known = new Set(uninstallCommand().options.map((o) => o.long));
    for (const a of c.command.slice(2)) if (a.startsWith('--')) expect(known.has(a), a).toBe(true);
    const binDir = c.command[c.command.indexOf('--bin-dir') + 1];
    const mounts = new Map<string, string>(c.volumeMounts.map((m: { name: string; mountPath: string }) => [m.mountPath, m.name]));
    const hostPath = (mountPath: string) => pod.volumes.find((v: { name: string }) => v.name === mounts.get(mountPath))?.hostPath.path;
    expect(hostPath(binDir)).toBe('/opt/cni/bin');
    for (const p of ['/etc/cni/net.d', '/var/lib/nhi-cni', '/var/lib/cni/networks', '/run/nhi-cni', '/run/netns']) expect(hostPath(p), p).toBe(p);
  });
});
