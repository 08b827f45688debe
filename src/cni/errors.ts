// CNI error codes (SPEC.md "Error codes") and the plugin codes of nhi-cni (>= 100).
// Every failure leaves the plugin as one CniError, printed on stdout as
// {"cniVersion","code","msg","details"} with a non-zero exit status.
import { redact } from './redact.js';

export const Code = {
  /** Incompatible CNI version. */
  IncompatibleVersion: 1,
  /** Unsupported field in the network configuration; msg names key and value. */
  UnsupportedField: 2,
  /** Container unknown or does not exist. */
  UnknownContainer: 3,
  /** Invalid necessary environment variables; msg names them. */
  InvalidEnv: 4,
  /** I/O failure, e.g. reading stdin. */
  IoFailure: 5,
  /** Failed to decode content (stdin JSON, prevResult). */
  DecodeFailure: 6,
  /** Invalid network configuration. */
  InvalidConfig: 7,
  /** Try again later: a transient condition such as a busy lock. */
  TryAgainLater: 11,
  /** STATUS: the plugin cannot serve ADD now. */
  NotAvailable: 50,
  /** STATUS: cannot serve ADD, and existing containers may have limited connectivity. */
  NotAvailableDegraded: 51,
  // ---- nhi-cni codes (documented in README "Error codes") ----
  /** An unexpected internal failure; details carry the cause. */
  Internal: 100,
  /** No free address is left in a range set. */
  PoolExhausted: 101,
  /** A requested address is taken, is the gateway, or lies in no range. */
  AddressUnavailable: 102,
  /** CHECK found the attachment's state missing or different. */
  CheckFailed: 103,
  /** A kernel or filesystem operation failed. */
  SystemFailure: 104,
} as const;

export type CodeValue = (typeof Code)[keyof typeof Code];

export class CniError extends Error {
  constructor(
    readonly code: CodeValue,
    msg: string,
    readonly details = '',
  ) {
    super(msg);
    this.name = 'CniError';
  }
}

export interface ErrorJson {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function errorJson(err: unknown, cniVersion: string): ErrorJson {
  const e =
    err instanceof CniError
      ? err
      : new CniError(Code.Internal, 'internal error', err instanceof Error ? err.message : String(err));
  // The last line of defence for a secret some input carried into a message.
  const out: ErrorJson = { cniVersion, code: e.code, msg: redact(e.message) };
  if (e.details) out.details = redact(e.details);
  return out;
}

/** The first `n` items and how many more, for a message that lists what is missing. */
export function firstOf(items: string[], n = 5): string {
  return `${items.slice(0, n).join(', ')}${items.length > n ? ` and ${items.length - n} more` : ''}`;
}
