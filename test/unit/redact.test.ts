// No secret in a message: URL credentials, bearer tokens, token lines and
// private keys are redacted, and errorJson redacts whatever reaches it.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { CniError, Code, errorJson } from '../../src/cni/errors.js';
import { redact, redactUrl } from '../../src/cni/redact.js';
import { loadKubeconfig } from '../../src/policy/k8s.js';
import { caught } from '../helpers/caught.js';
import { kubeconfigDoc } from '../helpers/kubeconfig.js';

const SECRET = 'S3cr3tT0ken';

describe('redact', () => {
  it.each([
    ['http://u:' + SECRET + '@host:6443/api', 'http://<redacted>@host:6443/api'],
    ['see https://' + SECRET + '@h and http://x', 'see https://<redacted>@h and http://x'],
    ['Authorization: Bearer ' + SECRET, 'Authorization: Bearer <redacted>'],
    ['    token: abc.' + SECRET + ': x', '    token: <redacted> x'],
    ['    token: "' + SECRET, '    token: "<redacted>"'],
    ['{"token":"' + SECRET + '","x":1}', '{"token":"<redacted>","x":1}'],
    ['  client-key-data: LS0t' + SECRET, '  client-key-data: <redacted>'],
    ['password=' + SECRET, 'password=<redacted>'],
    ['-----BEGIN EC PRIVATE KEY-----\nMHc' + SECRET + '\n-----END EC PRIVATE KEY-----\nrest', '<redacted> private key\nrest'],
  ])('%j', (text, out) => {
    expect(redact(text)).toBe(out);
    expect(redact(text)).not.toContain(SECRET);
  });
  it('leaves field paths and ordinary words alone', () => {
    for (const t of ['users[0].user.token: the token has characters an HTTP header cannot carry', 'tokenFile: /etc/t', 'https://host:6443']) expect(redact(t)).toBe(t);
    expect(redactUrl('https://a.b/c@d')).toBe('https://a.b/c@d');
  });
  it('errorJson redacts msg and details', () => {
    const j = errorJson(new CniError(Code.InvalidConfig, `server http://u:${SECRET}@h`, `token: ${SECRET}`), '1.0.0');
    expect(JSON.stringify(j)).not.toContain(SECRET);
    expect(JSON.stringify(errorJson(new Error(`Bearer ${SECRET}`), '1.0.0'))).not.toContain(SECRET);
  });
});

describe('kubeconfig errors carry no secret', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'nhi-redact-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const kubeconfig = (server: string, user: string) => {
    const p = join(dir, 'kubeconfig');
    writeFileSync(p, kubeconfigDoc(server, user));
    return p;
  };
  const shown = (e: CniError) => JSON.stringify({ msg: e.message, details: e.details });

  it.each([['http://admin:' + SECRET + '@10.0.0.1:6443'], ['https://admin:' + SECRET + '@10.0.0.1:6443'], ['https://admin:' + SECRET + '@10.0.0.1:6443?x=1'], ['ftp://admin:' + SECRET + '@[bad']])('a server URL %s is not quoted with its password', (server) => {
    const e = caught(() => loadKubeconfig(kubeconfig(server, '    token: abc')));
    expect(e.code).toBe(7);
    expect(shown(e)).not.toContain(SECRET);
  });

  it.each([
    [`    token: abc.${SECRET}: x`],
    [`    token: "${SECRET}`],
    [`    token: ${SECRET}\n   x: [`],
    [`    client-key-data: ${SECRET}: x`],
  ])('a YAML error on a credential line does not quote it: %j', (user) => {
    const e = caught(() => loadKubeconfig(kubeconfig('https://10.0.0.1:6443', user)));
    expect(e.code).toBe(7);
    expect(e.message).toMatch(/not valid YAML/);
    expect(e.details).toMatch(/line \d+, column \d+/);
    expect(shown(e)).not.toContain(SECRET);
  });
});
