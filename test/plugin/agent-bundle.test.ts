// The agent's Kubernetes library stays off the CNI path: it is in the agent
// bundle (the SEA asset lazy/agent.cjs, evaluated by `nhi-cni agent` only),
// not in the core whose modules the start-up snapshot holds, nor in the CLI's.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { BINARY, DIST } from '../helpers/paths.js';

// A path only @kubernetes/client-node's generated CoreV1Api holds.
const LIBRARY_MARK = '/api/v1/namespaces/{namespace}/pods/{name}/binding';

describe('the agent bundle', () => {
  it('holds the Kubernetes library, which the main bundle does not', () => {
    expect(readFileSync(join(DIST, 'lazy/agent.cjs'), 'utf8')).toContain(LIBRARY_MARK);
    // Neither the core (the start-up snapshot) nor the command line's bundle holds it.
    for (const f of ['main.cjs', 'lazy/cli.cjs']) {
      const text = readFileSync(join(DIST, f), 'utf8');
      expect(text).not.toContain(LIBRARY_MARK);
      expect(text).not.toContain('undici');
    }
  });

  it('is in the executable and loaded by `nhi-cni agent` (no file next to it needed)', () => {
    // A kubeconfig that does not exist: the error comes from the library's KubeConfig, inside the bundle.
    const r = spawnSync(BINARY, ['agent', '--kubeconfig', '/nonexistent/kubeconfig', '--node-name', 'n1'], { encoding: 'utf8', cwd: '/', env: { PATH: process.env.PATH } });
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/^nhi-cni agent: ENOENT: no such file or directory, open '\/nonexistent\/kubeconfig'/);
  });

  it('checks flags and their environment variables before loading anything', () => {
    const r = spawnSync(BINARY, ['agent', '--cluster-cidr', '10.0.0.0/8,10.1.0.0/16'], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    expect(r.status).toBe(2);
    expect(r.stderr).toBe('nhi-cni agent: --cluster-cidr: at most one IPv4 range\n');
    const e = spawnSync(BINARY, ['agent'], { encoding: 'utf8', env: { PATH: process.env.PATH, NHI_CNI_VNI: '0' } });
    expect(e.stderr).toBe('nhi-cni agent: --vni "0": must be a whole number from 1 to 16777215\n');
  });
});
