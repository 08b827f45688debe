// Spec versions and what each allows. SPEC.md "Version considerations": a config
// without cniVersion is 0.1.0; CHECK came with 0.4.0; GC and STATUS with 1.1.0.
import { CniError, Code } from './errors.js';

export const SUPPORTED_VERSIONS = ['0.1.0', '0.2.0', '0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const CURRENT_VERSION: CniVersion = '1.1.0';

export function isSupported(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** The version a config asks for; absent or empty means 0.1.0. */
export function configVersion(v: unknown): CniVersion {
  const s = v === undefined || v === null || v === '' ? '0.1.0' : v;
  if (typeof s !== 'string' || !isSupported(s)) {
    throw new CniError(
      Code.IncompatibleVersion,
      'incompatible CNI versions',
      `config is ${JSON.stringify(s)}, plugin supports [${SUPPORTED_VERSIONS.join(' ')}]`,
    );
  }
  return s;
}

export function atLeast(v: CniVersion, min: CniVersion): boolean {
  return SUPPORTED_VERSIONS.indexOf(v) >= SUPPORTED_VERSIONS.indexOf(min);
}

const MIN_FOR_VERB: Record<string, CniVersion> = { CHECK: '0.4.0', GC: '1.1.0', STATUS: '1.1.0' };

/** Refuses a verb that the config's version does not know (code 1). */
export function requireVerbVersion(verb: string, v: CniVersion): void {
  const min = MIN_FOR_VERB[verb];
  if (min && !atLeast(v, min)) {
    throw new CniError(
      Code.IncompatibleVersion,
      `config version does not allow ${verb}`,
      `${verb} needs cniVersion ${min} or later; the config says ${v}`,
    );
  }
}

/** Result shape families: a converter only has to know these four. */
export function resultFamily(v: CniVersion): 'legacy' | 'v04' | 'v1' {
  if (v === '0.1.0' || v === '0.2.0') return 'legacy';
  if (v === '1.0.0' || v === '1.1.0') return 'v1';
  return 'v04';
}
