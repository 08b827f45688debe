// Kubernetes name and label validation (k8s.io/apimachinery/pkg/util/validation),
// shared by the policy parser and the workload identity code. Everything that
// passes these checks is made of [A-Za-z0-9-_./] only, so no label, namespace
// or name can carry a quote, brace, semicolon, space or newline into an nft
// script or a message. Each function returns an error string, or undefined
// when the input is valid.

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const QUALIFIED_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const IANA_SVC_NAME = /^[-a-z0-9]+$/;

/** JSON-quotes user text for a message, cut to a readable length. */
export function quote(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}…` : s);
}

const NAME_CHARS = "at most 63 characters of A-Z, a-z, 0-9, '-', '_' and '.', starting and ending with a letter or digit";
const SUBDOMAIN = "a lowercase DNS-1123 subdomain (at most 253 characters of a-z, 0-9, '-' and '.', each dot-separated part starting and ending with a letter or digit)";
const LABEL = "a lowercase DNS-1123 label (at most 63 characters of a-z, 0-9 and '-', starting and ending with a letter or digit)";

function isSubdomain(s: string): boolean {
  return s.length <= 253 && DNS1123_SUBDOMAIN.test(s);
}

/** A label key: an optional DNS-1123 subdomain prefix and "/", then a name of at most 63 characters. */
export function validateLabelKey(key: string): string | undefined {
  if (typeof key !== 'string') return 'invalid label key: not a string';
  const parts = key.split('/');
  if (parts.length > 2) return `invalid label key ${quote(key)}: at most one '/' may separate a prefix from the name`;
  const [prefix, name] = parts.length === 2 ? [parts[0]!, parts[1]!] : [undefined, parts[0]!];
  if (prefix !== undefined && !isSubdomain(prefix)) {
    return `invalid label key ${quote(key)}: the prefix must be ${SUBDOMAIN}`;
  }
  if (name.length === 0 || name.length > 63 || !QUALIFIED_NAME.test(name)) {
    return `invalid label key ${quote(key)}: the name must be ${NAME_CHARS}`;
  }
  return undefined;
}

/** A label value: empty, or at most 63 characters of [A-Za-z0-9-_.] starting and ending with an alphanumeric. */
export function validateLabelValue(value: string): string | undefined {
  if (typeof value !== 'string') return 'invalid label value: not a string';
  if (value.length > 63 || !LABEL_VALUE.test(value)) {
    return `invalid label value ${quote(value)}: must be empty or ${NAME_CHARS}`;
  }
  return undefined;
}

/** A namespace name: a DNS-1123 label. */
export function validateNamespace(ns: string): string | undefined {
  if (typeof ns !== 'string') return 'invalid namespace: not a string';
  if (ns.length > 63 || !DNS1123_LABEL.test(ns)) return `invalid namespace ${quote(ns)}: must be ${LABEL}`;
  return undefined;
}

/** A pod (or NetworkPolicy) name: a DNS-1123 subdomain. */
export function validatePodName(name: string): string | undefined {
  if (typeof name !== 'string') return 'invalid name: not a string';
  if (!isSubdomain(name)) return `invalid name ${quote(name)}: must be ${SUBDOMAIN}`;
  return undefined;
}

/** A named port (IANA_SVC_NAME): at most 15 of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-'. */
export function validatePortName(name: string): string | undefined {
  if (typeof name !== 'string') return 'invalid port name: not a string';
  if (
    name.length === 0 || name.length > 15 || !IANA_SVC_NAME.test(name) || !/[a-z]/.test(name) ||
    name.includes('--') || name.startsWith('-') || name.endsWith('-')
  ) {
    return `invalid port name ${quote(name)}: must be an IANA service name (at most 15 characters of a-z, 0-9 and '-', at least one letter, no leading, trailing or double '-')`;
  }
  return undefined;
}
