// The identity source of cluster mode: the node agent (`nhi-cni agent`), asked
// over its root-only socket (`policy.agentSocket`, written into the conflist
// by the agent) who the pod named by K8S_POD_NAMESPACE / K8S_POD_NAME is. The
// agent answers from its informers; the answer is validated here exactly as a
// pod read from the API (identityFromApiPod).
//
// Fail closed: the policies the agent enforces may select this pod, so a pod
// whose identity cannot be known is not wired. An agent that does not answer,
// or does not know the pod yet (its watch may be a moment behind kubelet),
// is retried until the deadline, then the ADD fails with code 11 (kubelet
// retries the sandbox) and touches nothing.
import type { CniArgs } from '../cni/args.js';
import { CniError, Code } from '../cni/errors.js';
import { checkedPath } from '../cni/paths.js';
import { trace } from '../sys/trace.js';
import { identityFromApiPod } from './k8s.js';
import type { Identity } from './model.js';

/** How long an ADD waits for the agent to know the pod. */
export const AGENT_WAIT_MS = 5000;
/** An answer is a pod cut to its identity: anything far larger is not one. */
const MAX_BODY = 1 << 20;

interface Answer {
  status: number;
  body: string;
}

// node:http is loaded when first used: the start-up snapshot cannot hold its parser handles.
const http = () => process.getBuiltinModule('node:http') as typeof import('node:http');

function ask(socketPath: string, path: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http().request({ socketPath, path, method: 'GET', timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > MAX_BODY) req.destroy(new Error('answer too large'));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end();
  });
}

const errorOf = (body: string): string => {
  try {
    const e = (JSON.parse(body) as { error?: unknown }).error;
    return typeof e === 'string' ? e : body.trim();
  } catch {
    return body.trim().slice(0, 200);
  }
};

/** The `policy.agentSocket` of a config, checked; undefined when there is none. */
export function agentSocketOf(config: Record<string, unknown>): string | undefined {
  const policy = config.policy;
  if (policy === null || typeof policy !== 'object' || Array.isArray(policy)) return undefined;
  const s = (policy as Record<string, unknown>).agentSocket;
  if (s === undefined) return undefined;
  if (typeof s !== 'string') throw new CniError(Code.InvalidConfig, 'policy.agentSocket must be a string');
  return checkedPath(s, 'policy.agentSocket');
}

/**
 * The pod's identity from the agent; undefined when the config names no agent
 * socket or CNI_ARGS names no pod (a container started by hand: no policy
 * subject). Throws CniError 11 when the agent cannot tell in time.
 */
export async function identityFromAgent(config: Record<string, unknown>, args: CniArgs, { waitMs = AGENT_WAIT_MS, giveUpWhenDown = false }: { waitMs?: number; giveUpWhenDown?: boolean } = {}): Promise<Identity | undefined> {
  const socket = agentSocketOf(config);
  const namespace = args.K8S_POD_NAMESPACE;
  const name = args.K8S_POD_NAME;
  if (socket === undefined || !namespace || !name) return undefined;
  const base = `/pod-identity?namespace=${encodeURIComponent(namespace)}&name=${encodeURIComponent(name)}`;
  const deadline = Date.now() + waitMs;
  let last = '';
  for (let pause = 50; ; pause = Math.min(pause * 2, 400)) {
    try {
      // The agent holds the question until its watch delivers the pod (`wait`), so the answer comes as soon as it knows.
      const left = Math.max(0, deadline - Date.now());
      trace('asking the agent');
      const a = await ask(socket, `${base}&wait=${left}`, left + 1000);
      trace(`the agent answered ${a.status}`);
      if (a.status === 200) {
        let doc: { pod?: unknown; namespaceLabels?: unknown };
        try {
          doc = JSON.parse(a.body) as typeof doc;
        } catch {
          throw new CniError(Code.InvalidConfig, `the nhi-cni agent at ${socket} answered with something that is not JSON`);
        }
        const nsLabels = doc.namespaceLabels;
        if (nsLabels === null || typeof nsLabels !== 'object' || Array.isArray(nsLabels)) {
          throw new CniError(Code.InvalidConfig, `the nhi-cni agent at ${socket} answered without namespace labels`);
        }
        const identity = identityFromApiPod(doc.pod, nsLabels as Record<string, string>);
        // The answer must be about the pod asked for.
        if (identity.namespace !== namespace || identity.name !== name) {
          throw new CniError(Code.InvalidConfig, `the nhi-cni agent at ${socket} answered for ${identity.namespace}/${identity.name}, not ${namespace}/${name}`);
        }
        return identity;
      }
      // 400: our own question is bad (a name no pod can have): no retry helps.
      if (a.status === 400) throw new CniError(Code.InvalidEnv, `the nhi-cni agent refused the pod name ${namespace}/${name}: ${errorOf(a.body)}`);
      last = `${a.status}: ${errorOf(a.body)}`;
    } catch (e) {
      if (e instanceof CniError) throw e;
      last = (e as Error).message;
      // No agent listening: with a fallback, no point in waiting for one.
      const code = (e as NodeJS.ErrnoException).code;
      if (giveUpWhenDown && (code === 'ENOENT' || code === 'ECONNREFUSED')) break;
    }
    if (Date.now() + pause >= deadline) break;
    await new Promise((r) => setTimeout(r, pause));
  }
  throw new CniError(
    Code.TryAgainLater,
    `the nhi-cni agent at ${socket} could not tell who pod ${namespace}/${name} is within ${waitMs} ms (${last}); not wired, as its policies are unknown`,
    'check the agent: nhi-cni status; kubectl -n kube-system logs ds/nhi-cni',
  );
}
