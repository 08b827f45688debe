// One policy state per node: the nft table `inet nhi_policy` is one per
// network namespace, and every whole apply rewrites it from one state dir's
// pods. Two networks with policy and different stateDirs on one node would
// each re-apply the table without the other's pods (a denied flow allowed
// while `policy explain` says DENIED). So the table names its owner: set
// `owner` (type mark, size 1) holds a hash of the owning state dir, with the
// dir itself as the element's comment. Every transaction carries it: a whole
// apply adds the element (a second, different one overflows the set and the
// kernel refuses the transaction), a partial one deletes and re-adds it (the
// delete fails on a table another state dir owns). No extra process on the
// way of an ADD; the owner is only listed once a transaction was refused.
import { createHash } from 'node:crypto';
import { resolve } from 'node:path';
import { CniError, Code } from '../../cni/errors.js';
import type { NftCommand, NftObject } from '../../sys/nft.js';
import type { PolicyKernel } from './kernel.js';
import { POLICY_TABLE } from '../compile/index.js';

const OWNER_SET = 'owner';
const S = { family: 'inet', table: POLICY_TABLE, name: OWNER_SET };
/** nft keeps at most 128 bytes of an element comment. */
const COMMENT_MAX = 120;

interface Owner {
  val: number;
  comment: string;
}

export function ownerOf(stateDir: string): Owner {
  const dir = resolve(stateDir);
  const val = createHash('sha256').update(dir).digest().readUInt32BE(0);
  const comment = Buffer.byteLength(dir) > COMMENT_MAX ? `…${Buffer.from(dir).subarray(-COMMENT_MAX + 3).toString('utf8')}` : dir;
  return { val, comment };
}

/** The commands that claim the table for `stateDir`, for a whole or a partial transaction. */
export function ownerCommands(stateDir: string, whole: boolean): NftCommand[] {
  const o = ownerOf(stateDir);
  const add = { add: { element: { ...S, elem: [{ elem: { val: o.val, comment: o.comment } }] } } };
  return whole
    ? [{ add: { set: { ...S, type: 'mark', size: 1 } } }, add]
    : [{ delete: { element: { ...S, elem: [o.val] } } }, add];
}

/**
 * After a refused whole apply: code 7 naming the other state dir when the
 * table belongs to one; undefined when it is ours or has no owner (the
 * refusal had another cause).
 */
export async function ownerConflict(stateDir: string, kernel: PolicyKernel): Promise<CniError | undefined> {
  const table = await kernel.listPolicyTable();
  return typeof table === 'string' ? undefined : ownerConflictInTable(stateDir, table);
}

/** The same, from a listing of the table already in hand (the lost-state path lists it anyway). */
export function ownerConflictInTable(stateDir: string, table: NftObject[]): CniError | undefined {
  return conflictIn(stateDir, table.find((o) => o.set?.name === OWNER_SET)?.set?.elem ?? []);
}

function conflictIn(stateDir: string, elems: unknown[]): CniError | undefined {
  const mine = ownerOf(stateDir).val;
  for (const e of elems) {
    const el = (e as { elem?: { val?: unknown; comment?: unknown } }).elem;
    const val = typeof e === 'number' ? e : el?.val;
    if (val === undefined || val === mine) continue;
    const other = typeof el?.comment === 'string' ? el.comment : `(hash ${String(val)})`;
    return new CniError(
      Code.InvalidConfig,
      `the node's policy table inet ${POLICY_TABLE} belongs to the policy state in ${other}, not to stateDir ${resolve(stateDir)}`,
      'every network with a policy section on a node (nhi-cni or nhi-policy) must use the same stateDir: one table holds all of the node\'s pods, and a second state would overwrite the first one\'s',
    );
  }
  return undefined;
}
