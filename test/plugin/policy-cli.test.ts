// `nhi-cni policy …`, run as an operator runs it: the built binary against the
// example manifests, a hand-written policy state and conflist in temporary
// directories; sync and stats inside a network namespace the test creates.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { uniqueName } from '../helpers/netns.js';
import { Scratch } from '../helpers/plugin.js';
import { BINARY, ROOT } from '../helpers/paths.js';

const EXAMPLES = join(ROOT, 'examples', 'policies');

function cli(args: string[], netns?: string, env: Record<string, string> = {}) {
  const [cmd, argv] = netns ? ['ip', ['netns', 'exec', netns, BINARY, ...args]] : [BINARY, args];
  const r = spawnSync(cmd as string, argv as string[], { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

const pod = (name: string, app: string, ip: string) => ({
  network: 'net',
  containerId: `ctr-${name}`,
  ifname: 'eth0',
  ips: [ip],
  identity: { namespace: 'payments', name, labels: { app }, namespaceLabels: { 'kubernetes.io/metadata.name': 'payments' }, ports: [] },
});

/** A state dir with three payments pods (no policy applied yet) and a conflist whose policy.dir holds payments.yaml. */
function setup(scratch: Scratch) {
  const state = scratch.path('state');
  const policies = scratch.path('policies');
  mkdirSync(state, { recursive: true });
  mkdirSync(policies, { recursive: true });
  copyFileSync(join(EXAMPLES, 'payments.yaml'), join(policies, 'payments.yaml'));
  writeFileSync(join(state, 'policy-state.json'), JSON.stringify({
    pods: {
      'net/ctr-api/eth0': pod('api', 'payment-service', '10.99.0.2'),
      'net/ctr-db/eth0': pod('db', 'payments-db', '10.99.0.3'),
      'net/ctr-reporting/eth0': pod('reporting', 'reporting', '10.99.0.4'),
    },
    policies: [],
    names: { chains: [], sets: [] },
    profiles: {},
    podProfiles: {},
  }));
  const conflist = scratch.path('net.conflist');
  writeFileSync(conflist, JSON.stringify({
    cniVersion: '1.0.0',
    name: 'net',
    plugins: [
      { type: 'nhi-cni', stateDir: state, ipam: { type: 'host-local', ranges: [[{ subnet: '10.99.0.0/24' }]] }, policy: { dir: policies } },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  }));
  return { state, policies, conflist };
}

describe('nhi-cni policy check', () => {
  it('lists the policies of valid manifests, one line each', () => {
    const files = ['payments.yaml', 'cicd.yaml', 'ml.yaml'].map((f) => join(EXAMPLES, f));
    const r = cli(['policy', 'check', ...files]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(3 + 6 + 2);
    expect(lines[0]).toMatch(/^NetworkPolicy\s+payments\/default-deny\s+isolates ingress\+egress\s+0 rules/);
    expect(r.stdout).toMatch(/payments\/db-allow-payment-service\s+isolates ingress\s+1 rule /);
    expect(r.stdout).toMatch(/CiliumNetworkPolicy\s+ml\/data-readers\s+isolates ingress\s+1 rule /);
  });

  it('accepts a directory', () => {
    const scratch = new Scratch();
    try {
      const { policies } = setup(scratch);
      const r = cli(['policy', 'check', policies]);
      expect(r.status).toBe(0);
      expect(r.stdout.trim().split('\n')).toHaveLength(3);
    } finally {
      scratch.cleanup();
    }
  });

  it('refuses an L7 policy, naming file, policy and the HTTP rule', () => {
    const file = join(EXAMPLES, 'ml-cilium-l7.yaml');
    const r = cli(['policy', 'check', join(EXAMPLES, 'ml.yaml'), file]);
    expect(r.status).toBe(1);
    expect(r.stderr).toContain(file);
    expect(r.stderr).toContain('document 0 (CiliumNetworkPolicy ml/data-readers)');
    expect(r.stderr).toContain('spec.ingress[0].toPorts[0].rules.http');
    expect(r.stderr).toContain('L7 rules are enforced only in cluster mode');
  });

  it('has help', () => {
    for (const sub of ['check', 'compile', 'sync', 'explain', 'stats']) {
      const r = cli(['policy', sub, '--help']);
      expect(r.status).toBe(0);
      expect(r.stdout).toContain(`Usage: nhi-cni policy ${sub}`);
    }
    expect(cli(['policy', 'sync', '--help']).stdout).toContain("node's network namespace");
    expect(cli(['policy', 'stats', '--help']).stdout).toContain('isolate the direction');
  });
});

describe('nhi-cni policy compile and explain (hand-written policy state)', () => {
  const scratch = new Scratch();
  let s: ReturnType<typeof setup>;
  beforeAll(() => {
    s = setup(scratch);
  });
  afterAll(() => scratch.cleanup());

  it('compile prints the nft JSON transaction', () => {
    const r = cli(['policy', 'compile', '--config', s.conflist]);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.nftables[0]).toEqual({ metainfo: { json_schema_version: 1 } });
    expect(j.nftables[1]).toEqual({ add: { table: { family: 'inet', name: 'nhi_policy' } } });
    const elems = j.nftables.filter((c: any) => c.add?.element?.name === 'eg4').flatMap((c: any) => c.add.element.elem.map((e: any) => e[0]));
    expect(elems.sort()).toEqual(['10.99.0.2', '10.99.0.3', '10.99.0.4']);
  });

  it('compile --text summarises profiles and sets', () => {
    const r = cli(['policy', 'compile', '--config', s.conflist, '--text']);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('table inet nhi_policy: ');
    expect(r.stdout).toMatch(/profile pr_[0-9a-f]{12}\s+egress\s+\d+ rules?/);
    expect(r.stdout).toContain('policies: NetworkPolicy/payments/default-deny, NetworkPolicy/payments/payment-service-egress');
    expect(r.stdout).toMatch(/pods: .*payments\/api/);
    expect(r.stdout).toMatch(/set p_[0-9a-f]{12}_4\s+1 element/);
    expect(r.stdout).toMatch(/map eg4\s+3 elements/);
  });

  it('--state-dir overrides the plugin stateDir', () => {
    const r = cli(['policy', 'compile', '--config', s.conflist, '--text', '--state-dir', scratch.path('empty')]);
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('0 profiles for 0 pods');
  });

  const explainArgs = (from: string, to: string, port: string) =>
    ['policy', 'explain', '--from', from, '--to', to, '--port', port, '--config', s.conflist];

  it('explain: api -> db on 5432/tcp is allowed, naming the policies', () => {
    const r = cli(explainArgs('payments/api', 'payments/db', '5432/tcp'));
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('payments/api (10.99.0.2) -> payments/db (10.99.0.3) port 5432/tcp');
    expect(r.stdout).toContain('ALLOWED');
    expect(r.stdout).toContain('allowed by payments/payment-service-egress');
    expect(r.stdout).toContain('allowed by payments/db-allow-payment-service');
    expect(r.stdout).toContain(`NetworkPolicy payments/db-allow-payment-service: ${join(s.policies, 'payments.yaml')} document 1`);
  });

  it('explain: api -> db on 5433/tcp is denied', () => {
    const r = cli(explainArgs('payments/api', 'payments/db', '5433/tcp'));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('DENIED');
    expect(r.stdout).toContain('denied: no rule of a selecting policy allows it');
  });

  it('explain -o json / yaml: the verdict as a document, same exit status', () => {
    const ok = cli([...explainArgs('payments/api', 'payments/db', '5432/tcp'), '-o', 'json']);
    expect(ok.status).toBe(0);
    const j = JSON.parse(ok.stdout);
    expect(j).toMatchObject({ port: 5432, protocol: 'tcp', allowed: true });
    expect(j.deciding.map((d: { policy: string }) => d.policy)).toContain('payments/db-allow-payment-service');
    const denied = cli([...explainArgs('payments/api', 'payments/db', '5433/tcp'), '-o', 'yaml']);
    expect(denied.status).toBe(1);
    expect(denied.stdout).toMatch(/^allowed: false$/m);
  });

  it('explain: reporting -> db is denied', () => {
    const r = cli(explainArgs('payments/reporting', 'payments/db', '5432/tcp'));
    expect(r.status).toBe(1);
    expect(r.stdout).toContain('DENIED');
    expect(r.stdout).toMatch(/egress \(source\): isolated by payments\/default-deny; denied/);
  });

  it('explain: an IP address is the pod holding it, or a non-pod', () => {
    const held = cli(explainArgs('payments/api', '10.99.0.3', '5432/tcp'));
    expect(held.status).toBe(0);
    expect(held.stdout).toContain('-> payments/db (10.99.0.3)');
    const outside = cli(explainArgs('payments/api', '192.0.2.1', '443/tcp'));
    expect(outside.status).toBe(1);
    expect(outside.stdout).toContain('192.0.2.1 (not a pod of this node, nor a known pod of another)');
    expect(outside.stdout).toContain('ingress (destination): not isolated (no policy selects it)');
  });

  it('explain: bad input is exit 2', () => {
    const unknown = cli(explainArgs('payments/nobody', 'payments/db', '5432/tcp'));
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toContain('--from payments/nobody: no such pod in the policy state');
    expect(cli(explainArgs('payments/api', 'payments/db', '5432/icmp')).status).toBe(2);
    expect(cli(explainArgs('payments/api', 'payments/db', '70000/tcp')).status).toBe(2);
    expect(cli(['policy', 'explain', '--from', 'payments/api', '--config', s.conflist]).status).toBe(2);
  });
});

describe('nhi-cni policy sync and stats (in a network namespace)', () => {
  const scratch = new Scratch();
  const ns = uniqueName('nhipc');
  let s: ReturnType<typeof setup>;
  const env = () => ({ NHI_CNI_RUN_DIR: scratch.path('run') });
  const inNs = (cmd: string, ...args: string[]) => spawnSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' });

  beforeAll(() => {
    s = setup(scratch);
    expect(spawnSync('ip', ['netns', 'add', ns]).status).toBe(0);
    // The pods' addresses on the namespace's loopback: connections between
    // them pass its input hook, where the source pod's egress profile applies.
    expect(spawnSync('ip', ['-n', ns, 'link', 'set', 'lo', 'up']).status).toBe(0);
    for (const a of ['10.99.0.2/32', '10.99.0.3/32']) expect(spawnSync('ip', ['-n', ns, 'addr', 'add', a, 'dev', 'lo']).status).toBe(0);
  });
  afterAll(() => {
    spawnSync('ip', ['netns', 'del', ns]);
    scratch.cleanup();
  });

  it('stats without the table fails', () => {
    const r = cli(['policy', 'stats', '--state-dir', s.state], ns, env());
    expect(r.status).toBe(1);
    expect(r.stderr).toContain('cannot list table inet nhi_policy');
  });

  it('sync applies the manifests to every pod of the state and creates the table', () => {
    const r = cli(['policy', 'sync', '--config', s.conflist], ns, env());
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toContain('policies: 3 (was 0; added: NetworkPolicy payments/default-deny');
    expect(r.stdout).toContain('pods: 3 (3 with a workload identity, 3 under a profile)');
    expect(r.stdout).toMatch(/profiles: \d+ \(was 0; \d+ new, 0 removed\)/);
    const list = inNs('nft', '-j', 'list', 'table', 'inet', 'nhi_policy');
    expect(list.status).toBe(0);
    const chains = JSON.parse(list.stdout).nftables.filter((o: any) => o.chain).map((o: any) => o.chain.name);
    expect(chains).toContain('forward');
    expect(chains.some((c: string) => c.startsWith('pr_'))).toBe(true);
    // The pods name the compile they are under; the compile holds the policies.
    const compiledFiles = () => readdirSync(s.state).filter((f) => f.startsWith('policy-compiled-')).sort();
    const state = JSON.parse(readFileSync(join(s.state, 'policy-state.json'), 'utf8'));
    expect(Object.keys(state.pods).sort()).toEqual(['net/ctr-api/eth0', 'net/ctr-db/eth0', 'net/ctr-reporting/eth0']);
    expect(compiledFiles()).toEqual([`policy-compiled-${state.compiled}.json`, `policy-compiled-${state.compiled}.policies.json`]);
    const compiled = JSON.parse(readFileSync(join(s.state, `policy-compiled-${state.compiled}.json`), 'utf8'));
    expect(Object.values(compiled.classIndex).filter((e: any) => e.ingress || e.egress)).toHaveLength(3);
    const policies = JSON.parse(readFileSync(join(s.state, `policy-compiled-${state.compiled}.policies.json`), 'utf8'));
    expect(policies.policies).toHaveLength(3);

    const again = cli(['policy', 'sync', '--config', s.conflist], ns, env());
    expect(again.status).toBe(0);
    // A new compile replaces the old one: one file, the one the pods name.
    const after = JSON.parse(readFileSync(join(s.state, 'policy-state.json'), 'utf8'));
    expect(after.compiled).not.toBe(state.compiled);
    expect(compiledFiles()).toEqual([`policy-compiled-${after.compiled}.json`, `policy-compiled-${after.compiled}.policies.json`]);
    expect(again.stdout).toContain('policies: 3 (was 3)');
    expect(again.stdout).toMatch(/profiles: (\d+) \(was \1; 0 new, 0 removed\)/);
  });

  it('stats counts allowed and denied new connections per policy', () => {
    const zero = cli(['policy', 'stats', '--state-dir', s.state, '--json'], ns, env());
    expect(zero.stderr).toBe('');
    expect(zero.status).toBe(0);
    const rows0 = zero.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(rows0.map((x) => x.policy)).toEqual(['payments/db-allow-payment-service', 'payments/default-deny', 'payments/payment-service-egress']);
    for (const x of rows0) expect([x.allowed, x.denied]).toEqual([0, 0]);

    // api -> db: 5432 is allowed by api's egress (nothing listens: refused), 5433 is dropped.
    const script = `
      const net = require('node:net');
      const open = (port) => new Promise((res) => {
        const s = net.connect({ host: '10.99.0.3', port, localAddress: '10.99.0.2' });
        const done = (what) => { s.destroy(); res(what); };
        s.on('connect', () => done('connected')); s.on('error', (e) => done(e.code)); s.setTimeout(500, () => done('timeout'));
      });
      (async () => { console.log(await open(5432), await open(5433)); })();`;
    const t = inNs(process.execPath, '-e', script);
    expect(t.stdout.trim()).toBe('ECONNREFUSED timeout');

    const r = cli(['policy', 'stats', '--state-dir', s.state, '--json'], ns, env());
    expect(r.status).toBe(0);
    const rows = Object.fromEntries(r.stdout.trim().split('\n').map((l) => JSON.parse(l)).map((x) => [x.policy, x]));
    expect(rows['payments/payment-service-egress'].allowed).toBe(1);
    // api's egress profile denied 5433; both of its egress-isolating policies count it.
    expect(rows['payments/payment-service-egress'].denied).toBeGreaterThanOrEqual(1);
    expect(rows['payments/default-deny'].denied).toBeGreaterThanOrEqual(1);
    expect(rows['payments/db-allow-payment-service']).toMatchObject({ allowed: 0, denied: 0 });

    const table = cli(['policy', 'stats', '--state-dir', s.state], ns, env());
    expect(table.status).toBe(0);
    expect(table.stdout.split('\n')[0]).toMatch(/^POLICY\s+ALLOWED\s+DENIED$/);
    expect(table.stdout).toMatch(/payments\/payment-service-egress\s+1\s+[1-9]/);
  });
});
