// The kubeconfig the agent writes for the plugin (`<state-dir>/plugin.kubeconfig`,
// 0600, named by the conflist's policy.kubeconfig): when the agent cannot
// answer (restarting, crashed), an ADD reads the pod from the API itself with
// it, and the pod is still wired with its policy. The agent's own credentials
// live in its container (the service account token at
// /var/run/secrets/...), which the plugin on the host cannot read: the
// content is copied, and rewritten when it changes (a projected token
// rotates). Written whole (temp + rename), never through a symbolic link;
// the token is never logged.
import { lstatSync, readFileSync } from 'node:fs';
import type { KubeConfig } from '@kubernetes/client-node';
import { writeFileAtomic } from '../sys/files.js';

export const PLUGIN_KUBECONFIG = 'plugin.kubeconfig';

const read = (file: string | undefined): string | undefined => {
  if (!file) return undefined;
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return undefined;
  }
};
const b64 = (s: string | undefined) => (s === undefined ? undefined : Buffer.from(s).toString('base64'));

/**
 * The plugin's kubeconfig as text, from the agent's: server, CA and a bearer
 * token or client certificate, inline. Undefined when the agent's credentials
 * cannot be handed on (an exec plugin, an OIDC provider): the plugin then
 * has no fallback, and an ADD without the agent fails with code 11.
 */
export function pluginKubeconfig(kc: KubeConfig): string | undefined {
  const cluster = kc.getCurrentCluster();
  const user = kc.getCurrentUser();
  if (!cluster || !user) return undefined;
  const c: Record<string, unknown> = { server: cluster.server };
  const ca = cluster.caData ?? b64(read(cluster.caFile));
  if (ca) c['certificate-authority-data'] = ca;
  if (cluster.skipTLSVerify) c['insecure-skip-tls-verify'] = true;
  if (cluster.tlsServerName) c['tls-server-name'] = cluster.tlsServerName;
  const u: Record<string, unknown> = {};
  const tokenFile = (user.authProvider?.name === 'tokenFile' ? user.authProvider.config?.tokenFile : undefined) as string | undefined;
  const token = user.token ?? read(tokenFile)?.trim();
  if (token) u.token = token;
  const cert = user.certData ?? b64(read(user.certFile));
  const key = user.keyData ?? b64(read(user.keyFile));
  if (cert && key) {
    u['client-certificate-data'] = cert;
    u['client-key-data'] = key;
  }
  if (!u.token && !u['client-key-data']) return undefined;
  return `${JSON.stringify({
    apiVersion: 'v1', kind: 'Config', 'current-context': 'nhi-cni',
    clusters: [{ name: 'cluster', cluster: c }], users: [{ name: 'nhi-cni', user: u }], contexts: [{ name: 'nhi-cni', context: { cluster: 'cluster', user: 'nhi-cni' } }],
  }, null, 2)}\n`;
}

/** Writes it when its content changed; true when written. */
export function writePluginKubeconfig(path: string, text: string): boolean {
  let regular = false;
  try {
    regular = lstatSync(path).isFile();
  } catch {
    // absent: written
  }
  // Compared only with a regular file: whatever else is there is replaced (the rename replaces a link, never its target).
  if (regular && read(path) === text) return false;
  writeFileAtomic(path, text, { mode: 0o600, durable: true });
  return true;
}
