// MAC spoof check (`macspoofchk`): frames entering the bridge from a pod's
// host veth must carry the pod's MAC. Kept as set elements in one bridge-family
// table of ours, so an ADD adds two elements and one rule serves every pod:
//   iifname @spoofchk_ifs  iifname . ether saddr != @spoofchk_pairs  drop
import type { NftCommand } from '../sys/nft.js';

const FAMILY = 'bridge';
const TABLE = 'nhi_cni';
const CHAIN = 'spoofchk';
const IFS = 'spoofchk_ifs';
const PAIRS = 'spoofchk_pairs';

function skeleton(): NftCommand[] {
  return [
    { add: { table: { family: FAMILY, name: TABLE } } },
    { add: { set: { family: FAMILY, table: TABLE, name: IFS, type: 'ifname' } } },
    { add: { set: { family: FAMILY, table: TABLE, name: PAIRS, type: ['ifname', 'ether_addr'] } } },
    { add: { chain: { family: FAMILY, table: TABLE, name: CHAIN, type: 'filter', hook: 'prerouting', prio: -300, policy: 'accept' } } },
    { flush: { chain: { family: FAMILY, table: TABLE, name: CHAIN } } },
    {
      add: {
        rule: {
          family: FAMILY, table: TABLE, chain: CHAIN,
          comment: 'nhi-cni macspoofchk',
          expr: [
            { match: { op: '==', left: { meta: { key: 'iifname' } }, right: `@${IFS}` } },
            { match: { op: '!=', left: { concat: [{ meta: { key: 'iifname' } }, { payload: { protocol: 'ether', field: 'saddr' } }] }, right: `@${PAIRS}` } },
            { drop: null },
          ],
        },
      },
    },
  ];
}

function elements(verb: 'add' | 'delete', hostVeth: string, mac: string): NftCommand[] {
  return [
    { [verb]: { element: { family: FAMILY, table: TABLE, name: IFS, elem: [hostVeth] } } },
    { [verb]: { element: { family: FAMILY, table: TABLE, name: PAIRS, elem: [{ concat: [hostVeth, mac] }] } } },
  ];
}

export function macspoofAdd(hostVeth: string, mac: string): NftCommand[] {
  return [...skeleton(), ...elements('add', hostVeth, mac)];
}

/**
 * Removes the attachment's elements whether or not they exist: adding first
 * makes the delete always valid, so the transaction cannot fail on an element
 * that is already gone (nft 1.0.6 has no "destroy").
 */
export function macspoofDel(hostVeth: string, mac: string): NftCommand[] {
  return [...skeleton(), ...elements('add', hostVeth, mac), ...elements('delete', hostVeth, mac)];
}
