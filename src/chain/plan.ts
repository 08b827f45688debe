// What the modules of one verb want done, gathered so that the runner can
// apply it with as few processes as possible: one `ip -batch` on the node, one
// `sysctl` and one `ip -batch` inside the pod, and one nft transaction (the
// policy engine's, when enforcement is on, with the modules' commands in it).
import type { Pods } from '../policy/engine/pods.js';
import type { Policy } from '../policy/model.js';
import { IpBatch } from '../sys/ip.js';
import { NftTransaction } from '../sys/nft.js';

export class Plan {
  readonly host = new IpBatch();
  /** sysctl keys (slash form) = value, inside the pod's namespace. */
  readonly podSysctls: string[] = [];
  readonly pod = new IpBatch();
  readonly nft = new NftTransaction();
  /**
   * The policy engine's change, in the same transaction as `nft` (applied only
   * when enforcement is on); `forget`: a DEL's addresses, dropped from the
   * table even when the engine's state is lost.
   */
  readonly policy: { changes: ((pods: Pods) => void)[]; forget?: string[]; policies?: Policy[] } = { changes: [] };
  /**
   * Teardown: node-side links to take down first (sysfs, no process): once
   * they are down the pod sends nothing, so its links and its guard and
   * policy can go at the same time.
   */
  readonly down: string[] = [];
  /** Teardown: what must be gone after the host batch; each returns what is still there. */
  readonly verify: (() => string | undefined)[] = [];
  /**
   * ADD: node-side links to bring up last, once the pod is configured and the
   * nft transaction (its guard and policy) is in: until then the pod's frames
   * go nowhere. Through sysfs, no process.
   */
  readonly up: string[] = [];
  /** ADD: run after everything above succeeded (caches, sysfs tweaks). */
  readonly after: (() => void)[] = [];
  /** Teardown: run after the kernel's part (IPAM's release). */
  readonly release: (() => Promise<void>)[] = [];
}
