// What the modules of one ADD want done, gathered so that the runner can apply
// it with as few processes as possible: one `ip -batch` on the node, one
// `sysctl` and one `ip -batch` inside the pod, and one nft transaction.
import { IpBatch } from '../sys/ip.js';
import { NftTransaction } from '../sys/nft.js';

export class Plan {
  readonly host = new IpBatch();
  /** sysctl keys (slash form) = value, inside the pod's namespace. */
  readonly podSysctls: string[] = [];
  readonly pod = new IpBatch();
  readonly nft = new NftTransaction();
  /** Run after everything above succeeded (caches, sysfs tweaks). */
  readonly after: (() => void)[] = [];
}
