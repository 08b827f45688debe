// A kubeconfig, loaded and checked (src/policy/k8s.ts reads the API with it):
// clusters, users and contexts as kubectl reads them, files relative to the
// kubeconfig, credentials never in a message, a log line or the inspect/JSON
// form of the result.
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { inspect } from 'node:util';
import * as z from '../cni/zod.js';
import { CniError, Code } from '../cni/errors.js';
import { redact, redactUrl } from '../cni/redact.js';
import { formatIssues } from '../cni/result.js';
import { loadBundleSync } from '../lazy.js';
import { quote } from './names.js';

// node:tls is loaded when first used (see k8s.ts): the start-up snapshot cannot hold it.
const tls = () => process.getBuiltinModule('node:tls') as typeof import('node:tls');

// ---------------------------------------------------------------- kubeconfig

export const Str = z.string().check(z.minLength(1));
const OptStr = z.optional(Str);

export const ClusterSchema = z.looseObject({
  server: Str,
  'certificate-authority': OptStr,
  'certificate-authority-data': OptStr,
  'insecure-skip-tls-verify': z.optional(z.boolean()),
  'tls-server-name': OptStr,
  'proxy-url': z.optional(z.string()),
});

export const UserSchema = z.looseObject({
  token: OptStr,
  tokenFile: OptStr,
  'client-certificate': OptStr,
  'client-certificate-data': OptStr,
  'client-key': OptStr,
  'client-key-data': OptStr,
});

export const KubeconfigSchema = z.looseObject({
  'current-context': z.optional(z.string()),
  clusters: z._default(z.array(z.looseObject({ name: Str, cluster: ClusterSchema })), []),
  contexts: z._default(z.array(z.looseObject({ name: Str, context: z.looseObject({ cluster: Str, user: OptStr }) })), []),
  users: z.nullish(z.array(z.looseObject({ name: Str, user: z.nullish(UserSchema) }))),
});

/** A loaded kubeconfig: the current context's cluster and user, files read and checked. */
export interface Kubeconfig {
  /** The kubeconfig file, for messages. */
  path: string;
  /** The API server URL (https), without a trailing "/". */
  server: string;
  /** PEM CA bundle; undefined: the system roots. */
  ca?: Buffer;
  insecureSkipTlsVerify: boolean;
  tlsServerName?: string;
  token?: string;
  cert?: Buffer;
  key?: Buffer;
}

/** formatIssues with an empty root: drop the leading dots. */
export function rootless(issues: string): string {
  return issues.replace(/^\./, '').replace(/; \./g, '; ');
}

export function bad(path: string, msg: string, details = ''): CniError {
  return new CniError(Code.InvalidConfig, `kubeconfig ${path}: ${msg}`, details);
}

/** Hides the credentials from JSON.stringify and console/util.inspect. */
export function redacted(kc: Kubeconfig): Kubeconfig {
  const shown = (): Record<string, unknown> => ({
    path: kc.path,
    server: kc.server,
    ca: kc.ca ? '<pem>' : undefined,
    insecureSkipTlsVerify: kc.insecureSkipTlsVerify,
    tlsServerName: kc.tlsServerName,
    token: kc.token ? '<redacted>' : undefined,
    cert: kc.cert ? '<pem>' : undefined,
    key: kc.key ? '<redacted>' : undefined,
  });
  Object.defineProperty(kc, 'toJSON', { value: shown, enumerable: false });
  Object.defineProperty(kc, inspect.custom, { value: () => shown(), enumerable: false });
  return kc;
}

/**
 * Reads a kubeconfig the way kubectl does for what nhi-cni needs: the
 * current-context's cluster (https server, CA, insecure-skip-tls-verify,
 * tls-server-name) and user (token, tokenFile, client certificate and key).
 * Relative file paths are relative to the kubeconfig's directory. Throws
 * CniError 7 naming the field at fault.
 */
export function loadKubeconfig(path: string): Kubeconfig {
  const where = path;
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw bad(where, `cannot read the file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    // The YAML library is a lazy bundle (src/yaml/index.ts), loaded by the first kubeconfig or manifest parsed.
    doc = loadBundleSync('yaml').parse(text);
  } catch (e) {
    // The parser's message quotes the offending line, which may be a token
    // or key line: only its first line (what and where) is kept.
    throw bad(where, 'not valid YAML', redact((e as Error).message.split('\n')[0]!.replace(/:$/, '')));
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) throw bad(where, 'not a kubeconfig (expected a YAML mapping)');
  const p = KubeconfigSchema.safeParse(doc);
  if (!p.success) {
    const issues = rootless(formatIssues(p.error, ''));
    throw bad(where, issues.split('; ')[0] ?? 'invalid', issues);
  }
  const k = p.data;
  const ctxName = k['current-context'];
  if (!ctxName) throw bad(where, 'current-context is not set');
  const ci = k.contexts.findIndex((c) => c.name === ctxName);
  if (ci < 0) throw bad(where, `current-context ${quote(ctxName)} names no entry of contexts`);
  const ctx = k.contexts[ci]!.context;
  const cli = k.clusters.findIndex((c) => c.name === ctx.cluster);
  if (cli < 0) throw bad(where, `contexts[${ci}].context.cluster ${quote(ctx.cluster)} names no entry of clusters`);
  const cluster = k.clusters[cli]!.cluster;
  const cp = `clusters[${cli}].cluster`;

  let url: URL;
  try {
    url = new URL(cluster.server);
  } catch {
    throw bad(where, `${cp}.server ${quote(redactUrl(cluster.server))} is not a URL`);
  }
  if (url.protocol !== 'https:') throw bad(where, `${cp}.server ${quote(redactUrl(cluster.server))}: only https servers are supported`);
  if (url.username || url.password) throw bad(where, `${cp}.server must not carry credentials`);
  if (url.search || url.hash) throw bad(where, `${cp}.server ${quote(redactUrl(cluster.server))} must not have a query or fragment`);
  if (cluster['proxy-url']) throw bad(where, `${cp}.proxy-url is not supported by nhi-cni`);

  const dir = dirname(resolve(path));
  const readPem = (field: string, file: string | undefined, data: string | undefined): Buffer | undefined => {
    if (file !== undefined && data !== undefined) throw bad(where, `${field} and ${field}-data are both set; keep one`);
    if (data !== undefined) {
      const b64 = data.replace(/\s+/g, '');
      if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw bad(where, `${field}-data is not base64`);
      const buf = Buffer.from(b64, 'base64');
      if (!buf.includes('-----BEGIN ')) throw bad(where, `${field}-data does not decode to PEM`);
      return buf;
    }
    if (file === undefined) return undefined;
    const abs = resolve(dir, file);
    let buf: Buffer;
    try {
      buf = readFileSync(abs);
    } catch (e) {
      throw bad(where, `${field}: cannot read ${quote(abs)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    // A file's content is never shown (it may be a key); the file is named only.
    if (!buf.includes('-----BEGIN ')) throw bad(where, `${field}: ${quote(abs)} is not a PEM file`);
    return buf;
  };

  const out: Kubeconfig = { path, server: url.href.replace(/\/+$/, ''), insecureSkipTlsVerify: cluster['insecure-skip-tls-verify'] === true };
  const ca = readPem(`${cp}.certificate-authority`, cluster['certificate-authority'], cluster['certificate-authority-data']);
  if (ca) {
    // As kubectl: a CA with the insecure flag is a contradiction, refused.
    if (out.insecureSkipTlsVerify) throw bad(where, `${cp}: certificate-authority(-data) and insecure-skip-tls-verify are both set; keep one`);
    try {
      tls().createSecureContext({ ca });
    } catch (e) {
      throw bad(where, `${cp}.certificate-authority: not a usable CA certificate`, (e as Error).message);
    }
    out.ca = ca;
  }
  if (cluster['tls-server-name']) out.tlsServerName = cluster['tls-server-name'];

  if (ctx.user !== undefined) {
    const ui = (k.users ?? []).findIndex((u) => u.name === ctx.user);
    if (ui < 0) throw bad(where, `contexts[${ci}].context.user ${quote(ctx.user)} names no entry of users`);
    const user = k.users![ui]!.user ?? {};
    const up = `users[${ui}].user`;
    if (user.token !== undefined && user.tokenFile !== undefined) throw bad(where, `${up}: token and tokenFile are both set; keep one`);
    let token = user.token;
    if (user.tokenFile !== undefined) {
      const abs = resolve(dir, user.tokenFile);
      try {
        token = readFileSync(abs, 'utf8').trim();
      } catch (e) {
        throw bad(where, `${up}.tokenFile: cannot read ${quote(abs)}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
      }
      if (!token) throw bad(where, `${up}.tokenFile: ${quote(abs)} is empty`);
    }
    // The token goes into an HTTP header: visible ASCII only (never shown).
    if (token !== undefined && !/^[\x21-\x7e]+$/.test(token)) {
      throw bad(where, `${up}.${user.tokenFile !== undefined ? 'tokenFile' : 'token'}: the token has characters an HTTP header cannot carry`);
    }
    const cert = readPem(`${up}.client-certificate`, user['client-certificate'], user['client-certificate-data']);
    const key = readPem(`${up}.client-key`, user['client-key'], user['client-key-data']);
    if (cert && !key) throw bad(where, `${up}: client-certificate(-data) is set without client-key(-data)`);
    if (key && !cert) throw bad(where, `${up}: client-key(-data) is set without client-certificate(-data)`);
    if (cert && key) {
      try {
        tls().createSecureContext({ cert, key });
      } catch (e) {
        // OpenSSL's reason ("key values mismatch", "no start line"), never the key.
        throw bad(where, `${up}: client-certificate and client-key are not a usable pair`, (e as Error).message);
      }
      out.cert = cert;
      out.key = key;
    }
    if (token !== undefined) out.token = token;
    if (token === undefined && !cert) {
      const other = ['exec', 'auth-provider', 'username', 'password'].find((f) => f in user);
      if (other) throw bad(where, `${up}.${other} is not supported by nhi-cni: use token, tokenFile or client-certificate and client-key`);
    }
  }
  return redacted(out);
}

