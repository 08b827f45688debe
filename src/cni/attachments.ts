// GC's list of attachments that are still valid (SPEC.md "GC"). The key was
// renamed after spec-v1.1.0 was tagged (containernetworking/cni#1101); libcni
// sends both, and either is accepted. No key at all means "no list", which GC
// must not read as "nothing is valid".
import * as z from './zod.js';
import { CniError, Code } from './errors.js';
import { formatIssues } from './result.js';

/** One attachment of a container to a network: the key the spec gives it. */
export interface Attachment {
  containerId: string;
  ifname: string;
}

const List = z.array(z.object({ containerID: z.string(), ifname: z.string() }));

export function validAttachments(config: Record<string, unknown>): Attachment[] | undefined {
  const raw = config['cni.dev/valid-attachments'] ?? config['cni.dev/attachments'];
  if (raw === undefined || raw === null) return undefined;
  const parsed = List.safeParse(raw);
  if (!parsed.success) {
    throw new CniError(Code.InvalidConfig, 'invalid cni.dev/valid-attachments', formatIssues(parsed.error, 'cni.dev/valid-attachments'));
  }
  return parsed.data.map((a) => ({ containerId: a.containerID, ifname: a.ifname }));
}
