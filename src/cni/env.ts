// The process contract's environment (SPEC.md section 2 "Parameters"), validated
// before anything reaches a path or a command. Pure: takes the env as a record.
import { CniError, Code } from './errors.js';
import { absolutePathProblem } from './paths.js';

export const VERBS = ['ADD', 'DEL', 'CHECK', 'STATUS', 'GC', 'VERSION'] as const;
export type Verb = (typeof VERBS)[number];

export interface CniEnv {
  verb: Verb;
  containerId: string;
  netns: string;
  ifname: string;
  args: string;
  path: string[];
}

// Which variables each verb cannot do without. CNI_NETNS is optional on DEL
// (the namespace may be gone, SPEC.md "DEL"); CNI_PATH is only required for GC,
// as the spec says, since nothing else of ours must execute another plugin.
const REQUIRED: Record<Verb, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: ['CNI_PATH'],
  STATUS: [],
  VERSION: [],
};

// libcni's and the reference skel's rule: starts alphanumeric, then [a-zA-Z0-9_.-].
const CONTAINER_ID = /^[a-zA-Z0-9][a-zA-Z0-9_.-]*$/;
const MAX_CONTAINER_ID = 255;

export function parseVerb(raw: string | undefined): Verb {
  if (!raw) throw new CniError(Code.InvalidEnv, 'required env variables [CNI_COMMAND] missing');
  if ((VERBS as readonly string[]).includes(raw ?? '')) return raw as Verb;
  throw new CniError(Code.InvalidEnv, `unknown CNI_COMMAND: ${raw}`, `CNI_COMMAND must be one of ${VERBS.join(', ')}`);
}

export function validateContainerId(id: string): string | undefined {
  if (id.length > MAX_CONTAINER_ID) return `is longer than ${MAX_CONTAINER_ID} characters`;
  if (!CONTAINER_ID.test(id)) return 'must start with a letter or digit and hold only letters, digits, "_", "." and "-"';
  return undefined;
}

/**
 * The kernel's dev_valid_name(): 1..15 bytes, not "." or "..", no "/", ":" or
 * whitespace. Control characters are refused too: no runtime needs them and
 * they make logs and `ip` output lie.
 */
export function validateIfname(name: string): string | undefined {
  const bytes = Buffer.byteLength(name, 'utf8');
  if (bytes === 0) return 'is empty';
  if (bytes > 15) return `is ${bytes} bytes long; the kernel allows at most 15`;
  if (name === '.' || name === '..') return 'may not be "." or ".."';
  // Go's unicode.IsSpace (the reference's rule) also counts U+0085; JS's \s does not.
  if (/[/:\s\u0085]/u.test(name)) return 'may not contain "/", ":" or whitespace';
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f-\u009f]/.test(name)) return 'may not contain control characters';
  return undefined;
}

export function parseEnv(env: Record<string, string | undefined>): CniEnv {
  const verb = parseVerb(env.CNI_COMMAND);
  const missing = REQUIRED[verb].filter((k) => !env[k]);
  if (missing.length > 0) {
    throw new CniError(Code.InvalidEnv, `required env variables [${missing.join(',')}] missing`, `CNI_COMMAND=${verb} needs ${REQUIRED[verb].join(', ')}`);
  }
  const out: CniEnv = {
    verb,
    containerId: env.CNI_CONTAINERID ?? '',
    netns: env.CNI_NETNS ?? '',
    ifname: env.CNI_IFNAME ?? '',
    args: env.CNI_ARGS ?? '',
    path: (env.CNI_PATH ?? '').split(':').filter(Boolean),
  };
  // GC and STATUS get these as empty strings from libcni; validate what is set.
  const problems: string[] = [];
  const check = (name: string, value: string, rule: (v: string) => string | undefined) => {
    if (!value) return;
    const why = rule(value);
    if (why) problems.push(`${name} ${JSON.stringify(value)} ${why}`);
  };
  check('CNI_CONTAINERID', out.containerId, validateContainerId);
  check('CNI_IFNAME', out.ifname, validateIfname);
  // The runtime's netns path gets the same rule as a config's paths: one that
  // the kernel cannot open or that would make a log line lie is code 4 here.
  check('CNI_NETNS', out.netns, absolutePathProblem);
  // Ours, not the spec's: the directory for caches and nft's input file.
  // Checked here so that a value the filesystem cannot take is a clear
  // code 4, not an fs error halfway through an ADD (a fuzz finding).
  check('NHI_CNI_RUN_DIR', env.NHI_CNI_RUN_DIR ?? '', absolutePathProblem);
  if (problems.length > 0) {
    throw new CniError(Code.InvalidEnv, `invalid env variables: ${problems.join('; ')}`);
  }
  return out;
}
