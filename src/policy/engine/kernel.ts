// What the engine needs of the kernel, as one dependency: run one nft
// transaction (all or nothing), list the policy table, and the sysctls the
// policy relies on. The real one runs nft (src/sys/nft.ts); unit tests pass a
// fake, so no path of the engine needs root to be exercised.
import { applyNft, listTable, NftTransaction, type NftCommand, type NftObject } from '../../sys/nft.js';
import { ensureSysctl } from '../../sys/sysfs.js';
import { POLICY_TABLE } from '../compile/index.js';

/** A transaction's outcome: the kernel took all of it, or none of it and said why. */
export type NftOutcome = { ok: true } | { ok: false; error: string };

export interface PolicyKernel {
  /** Runs the commands as one nft transaction. */
  apply(commands: NftCommand[]): Promise<NftOutcome>;
  /** The objects of table inet nhi_policy, or why it cannot be listed (no table, for one). */
  listPolicyTable(): Promise<NftObject[] | string>;
  /** Makes the node ready for the policy table (sysctls); called before every change. */
  prepare(): void;
}

export const realKernel: PolicyKernel = {
  async apply(commands) {
    const r = await applyNft(new NftTransaction().push(...commands));
    return r.exitCode === 0 ? { ok: true } : { ok: false, error: r.stderr.trim() || `nft exit status ${r.exitCode}` };
  },
  listPolicyTable: () => listTable('inet', POLICY_TABLE),
  prepare() {
    // Same-bridge pod traffic is bridged, not routed: br_netfilter hands it to
    // the inet forward hook only with these on.
    ensureSysctl('net/bridge/bridge-nf-call-iptables', '1');
    ensureSysctl('net/bridge/bridge-nf-call-ip6tables', '1');
  },
};
