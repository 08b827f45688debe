// What the engine needs of the kernel, as one dependency: run one nft
// transaction (all or nothing), list the policy table, and the sysctls the
// policy relies on. Built from an NftRunner (src/sys/nft.ts: the host's nft,
// or FakeNft in unit tests), so no path of the engine needs root to be
// exercised, and from a node preparation that tests replace (it writes
// /proc/sys).
import { hostNft, NftTransaction, type NftCommand, type NftObject, type NftRunner } from '../../sys/nft.js';
import { ensureSysctl } from '../../sys/sysfs.js';
import { POLICY_TABLE } from '../compile/index.js';

/** A transaction's outcome: the kernel took all of it, or none of it and said why. */
export type NftOutcome = { ok: true } | { ok: false; error: string };

export interface PolicyKernel {
  /** Runs the commands as one nft transaction. */
  apply(commands: NftCommand[]): Promise<NftOutcome>;
  /** The objects of table inet nhi_policy, or why it cannot be listed (no table, for one). */
  listPolicyTable(): Promise<NftObject[] | string>;
  /** Makes the node ready for the policy table; called before every change. */
  prepare(): void;
}

/**
 * Same-bridge pod traffic is bridged, not routed: br_netfilter hands it to
 * the inet forward hook only with these on.
 */
export function enableBridgeNetfilter(): void {
  ensureSysctl('net/bridge/bridge-nf-call-iptables', '1');
  ensureSysctl('net/bridge/bridge-nf-call-ip6tables', '1');
}

export function policyKernel(nft: NftRunner = hostNft, prepare: () => void = enableBridgeNetfilter): PolicyKernel {
  return {
    async apply(commands) {
      const r = await nft.run(new NftTransaction().push(...commands));
      return r.exitCode === 0 ? { ok: true } : { ok: false, error: r.stderr.trim() || `nft exit status ${r.exitCode}` };
    },
    listPolicyTable: () => nft.list('inet', POLICY_TABLE),
    prepare,
  };
}
