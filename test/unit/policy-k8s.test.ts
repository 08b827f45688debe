import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { inspect } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CniError, Code } from '../../src/cni/errors.js';
import { fetchIdentity, identityFromKubernetes, loadKubeconfig } from '../../src/policy/k8s.js';
import { caught } from '../helpers/caught.js';

const TOKEN = 'good-token-s3cr3t';
const WRONG_TOKEN = 'wrong-token-s3cr3t';

let dir: string;
let server: Server;
let port: number;
let hang: NetServer;
let hangPort: number;
let closedPort: number;
const hanging = new Set<Socket>();
const requests: { url: string; auth: string | undefined; clientCert: boolean }[] = [];

const POD = {
  apiVersion: 'v1',
  kind: 'Pod',
  metadata: { name: 'api-7d9f', namespace: 'payments', uid: 'x', labels: { app: 'api', 'app.kubernetes.io/part-of': 'checkout' }, annotations: { a: 'b' } },
  spec: {
    serviceAccountName: 'payments-api',
    nodeName: 'n1',
    containers: [
      { name: 'api', image: 'x', ports: [{ name: 'http', containerPort: 8080, protocol: 'TCP' }, { containerPort: 9090, protocol: 'TCP' }] },
      { name: 'dns', image: 'y', ports: [{ name: 'dns', containerPort: 53, protocol: 'UDP' }] },
      { name: 'sidecar', image: 'z' },
    ],
  },
  status: { phase: 'Pending' },
};
const NAMESPACE = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'payments', labels: { team: 'pay', 'kubernetes.io/metadata.name': 'payments' } } };

function status(res: ServerResponse, code: number, message: string): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ kind: 'Status', apiVersion: 'v1', status: 'Failure', message, code }));
}

function handler(req: IncomingMessage, res: ServerResponse): void {
  const sock = req.socket as TLSSocket;
  const clientCert = sock.authorized && sock.getPeerCertificate().subject?.CN === 'nhi-cni';
  requests.push({ url: req.url ?? '', auth: req.headers.authorization, clientCert });
  if (req.headers.authorization !== `Bearer ${TOKEN}` && !clientCert) return status(res, 401, 'Unauthorized');
  const json = (o: unknown) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(o));
  };
  switch (req.url) {
    case '/api/v1/namespaces/payments':
      return json(NAMESPACE);
    case '/api/v1/namespaces/payments/pods/api-7d9f':
      return json(POD);
    case '/api/v1/namespaces/payments/pods/quoted':
      return json({ ...POD, metadata: { ...POD.metadata, name: 'quoted', labels: { app: 'a"b' } } });
    case '/api/v1/namespaces/payments/pods/denied':
      return status(res, 403, 'pods "denied" is forbidden: User "system:serviceaccount:kube-system:nhi-cni" cannot get resource "pods"');
    case '/api/v1/namespaces/flaky':
    case '/api/v1/namespaces/flaky/pods/p':
      return status(res, 503, 'etcdserver: leader changed');
    default:
      return status(res, 404, 'not found');
  }
}

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

function kubeconfig(file: string, cluster: Record<string, unknown>, user: Record<string, unknown> | undefined = { token: TOKEN }): string {
  const doc = {
    apiVersion: 'v1',
    kind: 'Config',
    'current-context': 'ctx',
    clusters: [{ name: 'c', cluster }],
    contexts: [{ name: 'ctx', context: user ? { cluster: 'c', user: 'u' } : { cluster: 'c' } }],
    users: user ? [{ name: 'u', user }] : [],
  };
  const path = join(dir, file);
  writeFileSync(path, JSON.stringify(doc)); // JSON is YAML
  return path;
}

const local = (p: number) => ({ server: `https://127.0.0.1:${p}`, 'certificate-authority': 'ca.crt' });

async function rejected(p: Promise<unknown>): Promise<CniError> {
  try {
    await p;
  } catch (e) {
    expect(e).toBeInstanceOf(CniError);
    return e as CniError;
  }
  throw new Error('expected a CniError, the promise resolved');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nhi-k8s-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = (name: string) =>
    openssl('req', '-x509', ...ec, '-keyout', `${name}.key`, '-out', `${name}.crt`, '-days', '1', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  ca('ca');
  ca('other-ca');
  const leaf = (name: string, cn: string, ext: string) => {
    writeFileSync(join(dir, `${name}.ext`), ext);
    openssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${cn}`);
    openssl('x509', '-req', '-in', `${name}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${name}.crt`, '-days', '1', '-extfile', `${name}.ext`);
  };
  leaf('server', 'kube-apiserver', 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'nhi-cni', 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');

  const read = (f: string) => readFileSync(join(dir, f));
  server = createHttpsServer({ key: read('server.key'), cert: read('server.crt'), ca: read('ca.crt'), requestCert: true, rejectUnauthorized: false }, handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  port = (server.address() as AddressInfo).port;

  // Accepts connections and never says a word (not even the TLS handshake).
  hang = createNetServer((s) => {
    hanging.add(s);
    s.on('close', () => hanging.delete(s));
  });
  await new Promise<void>((r) => hang.listen(0, '127.0.0.1', r));
  hangPort = (hang.address() as AddressInfo).port;

  const closed = createNetServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  closedPort = (closed.address() as AddressInfo).port;
  await new Promise((r) => closed.close(r));
});

afterAll(async () => {
  for (const s of hanging) s.destroy();
  server?.closeAllConnections();
  await Promise.all([new Promise((r) => server?.close(r)), new Promise((r) => hang?.close(r))]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('loadKubeconfig', () => {
  it('reads the current context, resolving files against its directory', () => {
    const kc = loadKubeconfig(kubeconfig('kc.yaml', local(port)));
    expect(kc.server).toBe(`https://127.0.0.1:${port}`);
    expect(kc.ca?.toString()).toContain('BEGIN CERTIFICATE');
    expect(kc.token).toBe(TOKEN);
    expect(kc.insecureSkipTlsVerify).toBe(false);
  });

  it('never shows the token in JSON or inspect output', () => {
    const kc = loadKubeconfig(kubeconfig('kc.yaml', local(port)));
    expect(JSON.stringify(kc)).not.toContain(TOKEN);
    expect(inspect(kc)).not.toContain(TOKEN);
    expect(JSON.stringify(kc)).toContain('<redacted>');
  });

  it('takes -data fields and tokenFile', () => {
    writeFileSync(join(dir, 'token'), `${TOKEN}\n`);
    const kc = loadKubeconfig(
      kubeconfig('kc-data.yaml', { server: `https://127.0.0.1:${port}/`, 'certificate-authority-data': readFileSync(join(dir, 'ca.crt')).toString('base64') }, { tokenFile: 'token' }),
    );
    expect(kc.token).toBe(TOKEN);
    expect(kc.server).toBe(`https://127.0.0.1:${port}`);
  });

  it('refuses what it cannot use, naming the field', () => {
    const e = (c: Record<string, unknown>, u?: Record<string, unknown>) => caught(() => loadKubeconfig(kubeconfig('bad.yaml', c, u)));
    expect(e({ server: 'http://127.0.0.1:1' }).message).toMatch(/clusters\[0\]\.cluster\.server .*only https/);
    expect(e({ ...local(port), 'certificate-authority': 'nope.crt' }).message).toMatch(/clusters\[0\]\.cluster\.certificate-authority: cannot read ".*nope\.crt": ENOENT/);
    expect(e({ ...local(port), 'insecure-skip-tls-verify': true }).message).toMatch(/insecure-skip-tls-verify are both set/);
    expect(e(local(port), { 'client-certificate': 'client.crt' }).message).toMatch(/users\[0\]\.user: client-certificate\(-data\) is set without client-key/);
    expect(e(local(port), { 'client-certificate': 'client.crt', 'client-key': 'server.key' }).message).toMatch(/not a usable pair/);
    expect(e(local(port), { exec: { command: 'aws' } }).message).toMatch(/users\[0\]\.user\.exec is not supported/);
    expect(e(local(port), { token: 'a b' }).message).toMatch(/users\[0\]\.user\.token: the token has characters/);
    expect(e({ server: 42 }).message).toMatch(/clusters\[0\]\.cluster\.server: /);
    for (const err of [e({ server: 'http://x' }), e(local(port), { token: 'a b' })]) expect(err.code).toBe(Code.InvalidConfig);
    writeFileSync(join(dir, 'noctx.yaml'), 'clusters: []\n');
    expect(caught(() => loadKubeconfig(join(dir, 'noctx.yaml'))).message).toMatch(/current-context is not set/);
    expect(caught(() => loadKubeconfig(join(dir, 'missing.yaml'))).message).toMatch(/cannot read the file: ENOENT/);
  });
});

describe('fetchIdentity', () => {
  it('builds the identity from the pod and its namespace, sending the bearer token', async () => {
    const before = requests.length;
    const id = await fetchIdentity(loadKubeconfig(kubeconfig('kc.yaml', local(port))), 'payments', 'api-7d9f');
    expect(id).toStrictEqual({
      namespace: 'payments',
      name: 'api-7d9f',
      labels: { app: 'api', 'app.kubernetes.io/part-of': 'checkout', 'io.cilium.k8s.policy.serviceaccount': 'payments-api' },
      namespaceLabels: { team: 'pay', 'kubernetes.io/metadata.name': 'payments' },
      serviceAccount: 'payments-api',
      ports: [
        { name: 'http', containerPort: 8080, protocol: 'TCP' },
        { name: 'dns', containerPort: 53, protocol: 'UDP' },
      ],
    });
    const sent = requests.slice(before);
    expect(sent.map((r) => r.url).sort()).toStrictEqual(['/api/v1/namespaces/payments', '/api/v1/namespaces/payments/pods/api-7d9f']);
    expect(sent.every((r) => r.auth === `Bearer ${TOKEN}`)).toBe(true);
  });

  it('authenticates with a client certificate', async () => {
    const before = requests.length;
    const kc = loadKubeconfig(kubeconfig('kc-cert.yaml', local(port), { 'client-certificate': 'client.crt', 'client-key': join(dir, 'client.key') }));
    const id = await fetchIdentity(kc, 'payments', 'api-7d9f');
    expect(id.serviceAccount).toBe('payments-api');
    expect(requests.slice(before).every((r) => r.clientCert && r.auth === undefined)).toBe(true);
  });

  it('a wrong token: 401, code 7, and the token is nowhere in the error', async () => {
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc-wrong.yaml', local(port), { token: WRONG_TOKEN })), 'payments', 'api-7d9f'));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.message).toMatch(/refused the credentials .*401 Unauthorized/);
    expect(`${e.message} ${e.details} ${JSON.stringify(e)} ${e.stack}`).not.toContain(WRONG_TOKEN);
  });

  it('403: code 7 naming the missing permission, with the API message', async () => {
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc.yaml', local(port))), 'payments', 'denied'));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.message).toMatch(/forbids reading pod payments\/denied \(403 Forbidden\).*"get" on pods and namespaces/);
    expect(e.details).toMatch(/cannot get resource "pods"/);
  });

  it('a pod the API does not know: code 7', async () => {
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc.yaml', local(port))), 'payments', 'missing'));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.message).toBe(`pod payments/missing not found in the Kubernetes API at https://127.0.0.1:${port}`);
  });

  it('5xx: code 11', async () => {
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc.yaml', local(port))), 'flaky', 'p'));
    expect(e.code).toBe(Code.TryAgainLater);
    expect(e.message).toMatch(/^cannot reach the Kubernetes API at https:\/\/127\.0\.0\.1:\d+: GET .* HTTP 503 \(etcdserver: leader changed\)/);
  });

  it('an invalid label value from the API: code 7, validated like any source', async () => {
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc.yaml', local(port))), 'payments', 'quoted'));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.message).toMatch(/^Kubernetes API pod payments\/quoted: metadata\.labels\["app"\]: invalid label value "a\\"b"/);
  });

  it('refuses a bad namespace or name before any request', async () => {
    const kc = loadKubeconfig(kubeconfig('kc.yaml', local(port)));
    const before = requests.length;
    for (const [ns, name] of [['Payments', 'p'], ['a/../b', 'p'], ['payments', 'x/../../namespaces'], ['payments', 'a?b']] as const) {
      const e = await rejected(fetchIdentity(kc, ns, name));
      expect(e.code).toBe(Code.InvalidConfig);
      expect(e.message).toMatch(/^CNI_ARGS K8S_POD_(NAMESPACE|NAME): invalid/);
    }
    expect(requests.length).toBe(before);
  });

  it('an unreachable server (closed port): code 11, quickly', async () => {
    const t0 = Date.now();
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc-closed.yaml', local(closedPort))), 'payments', 'api-7d9f'));
    expect(e.code).toBe(Code.TryAgainLater);
    expect(e.message).toMatch(new RegExp(`^cannot reach the Kubernetes API at https://127\\.0\\.0\\.1:${closedPort}: ECONNREFUSED`));
    expect(Date.now() - t0).toBeLessThan(1000);
  });

  it('a server that never answers: code 11 after timeoutMs', async () => {
    const t0 = Date.now();
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc-hang.yaml', local(hangPort))), 'payments', 'api-7d9f', { timeoutMs: 300 }));
    const took = Date.now() - t0;
    expect(e.code).toBe(Code.TryAgainLater);
    expect(e.message).toMatch(/: no answer within 300 ms$/);
    expect(took).toBeGreaterThanOrEqual(290);
    expect(took).toBeLessThan(1500);
  });

  it('a server certificate from another CA: code 7 (retrying cannot help)', async () => {
    const before = requests.length;
    const e = await rejected(fetchIdentity(loadKubeconfig(kubeconfig('kc-otherca.yaml', { ...local(port), 'certificate-authority': 'other-ca.crt' })), 'payments', 'api-7d9f'));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.message).toMatch(/failed TLS verification/);
    expect(e.details).toMatch(/certificate-authority/);
    expect(requests.length).toBe(before); // no request reached the handler
  });

  it('insecure-skip-tls-verify skips the CA check', async () => {
    const kc = loadKubeconfig(kubeconfig('kc-insecure.yaml', { server: `https://127.0.0.1:${port}`, 'insecure-skip-tls-verify': true }));
    expect((await fetchIdentity(kc, 'payments', 'api-7d9f')).name).toBe('api-7d9f');
  });
});

describe('identityFromKubernetes', () => {
  const args = { K8S_POD_NAMESPACE: 'payments', K8S_POD_NAME: 'api-7d9f', IgnoreUnknown: '1' };

  it('is undefined without policy.kubeconfig or without K8S_POD_*', async () => {
    const path = kubeconfig('kc.yaml', local(port));
    const before = requests.length;
    expect(await identityFromKubernetes({ name: 'n', type: 'nhi-cni' }, args)).toBeUndefined();
    expect(await identityFromKubernetes({ policy: { dir: '/etc/p' } }, args)).toBeUndefined();
    expect(await identityFromKubernetes({ policy: { kubeconfig: path } }, { K8S_POD_NAMESPACE: 'payments' })).toBeUndefined();
    expect(await identityFromKubernetes({ policy: { kubeconfig: path } }, {})).toBeUndefined();
    expect(requests.length).toBe(before);
  });

  it('reads the pod named by CNI_ARGS', async () => {
    const id = await identityFromKubernetes({ policy: { kubeconfig: kubeconfig('kc.yaml', local(port)) } }, args);
    expect(id?.labels).toStrictEqual({ app: 'api', 'app.kubernetes.io/part-of': 'checkout', 'io.cilium.k8s.policy.serviceaccount': 'payments-api' });
  });

  it('refuses a relative kubeconfig path and a non-string one', async () => {
    expect((await rejected(identityFromKubernetes({ policy: { kubeconfig: 'kc.yaml' } }, args))).message).toMatch(/must be an absolute path/);
    const e = await rejected(identityFromKubernetes({ policy: { kubeconfig: 7 } }, args));
    expect(e.code).toBe(Code.InvalidConfig);
    expect(e.details).toMatch(/^policy\.kubeconfig: /);
  });
});
