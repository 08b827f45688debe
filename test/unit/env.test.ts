import { describe, expect, it } from 'vitest';
import {
  parseEnv,
  parseVerb,
  validateContainerId,
  validateIfname,
  VERBS,
  type Verb,
} from '../../src/cni/env.js';
import { CniError } from '../../src/cni/errors.js';
import { caught } from '../helpers/caught.js';

/** Runs fn, expects a CniError, returns it. */

const FULL = {
  CNI_CONTAINERID: 'ctr1',
  CNI_NETNS: '/var/run/netns/ns1',
  CNI_IFNAME: 'eth0',
  CNI_PATH: '/opt/cni/bin',
};

const REQUIRED: Record<Verb, string[]> = {
  ADD: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  CHECK: ['CNI_CONTAINERID', 'CNI_NETNS', 'CNI_IFNAME'],
  DEL: ['CNI_CONTAINERID', 'CNI_IFNAME'],
  GC: ['CNI_PATH'],
  STATUS: [],
  VERSION: [],
};

describe('parseVerb', () => {
  it.each(VERBS)('accepts %s', (v) => {
    expect(parseVerb(v)).toBe(v);
  });

  it('names CNI_COMMAND as missing when it is empty', () => {
    const e = caught(() => parseVerb(''));
    expect(e.code).toBe(4);
    expect(e.message).toBe('required env variables [CNI_COMMAND] missing');
  });

  it.each([['add'], ['Add'], ['FOO'], [' ADD'], ['ADD ']])('refuses %j with code 4', (raw) => {
    const e = caught(() => parseVerb(raw));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`unknown CNI_COMMAND: ${raw}`);
    expect(e.details).toBe('CNI_COMMAND must be one of ADD, DEL, CHECK, STATUS, GC, VERSION');
  });

  it('refuses an unset CNI_COMMAND with code 4', () => {
    expect(caught(() => parseVerb(undefined)).code).toBe(4);
  });
});

describe('parseEnv: required variables per verb', () => {
  it('parses a complete ADD environment', () => {
    expect(parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p', CNI_PATH: '/opt/cni/bin::/usr/lib/cni:' })).toStrictEqual({
      verb: 'ADD',
      containerId: 'ctr1',
      netns: '/var/run/netns/ns1',
      ifname: 'eth0',
      args: 'IgnoreUnknown=1;K8S_POD_NAME=p',
      path: ['/opt/cni/bin', '/usr/lib/cni'],
    });
  });

  it.each(['VERSION', 'STATUS'] as const)('%s needs nothing but CNI_COMMAND', (verb) => {
    expect(parseEnv({ CNI_COMMAND: verb })).toStrictEqual({
      verb,
      containerId: '',
      netns: '',
      ifname: '',
      args: '',
      path: [],
    });
  });

  it('DEL does not need CNI_NETNS', () => {
    const env = parseEnv({ CNI_COMMAND: 'DEL', CNI_CONTAINERID: 'c', CNI_IFNAME: 'eth0' });
    expect(env.verb).toBe('DEL');
    expect(env.netns).toBe('');
  });

  it('GC needs only CNI_PATH', () => {
    const env = parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin' });
    expect(env.path).toStrictEqual(['/opt/cni/bin']);
  });

  it('ADD without anything names all three missing variables', () => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD' }));
    expect(e.code).toBe(4);
    expect(e.message).toBe('required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing');
    expect(e.details).toBe('CNI_COMMAND=ADD needs CNI_CONTAINERID, CNI_NETNS, CNI_IFNAME');
  });

  const cases = (Object.entries(REQUIRED) as [Verb, string[]][]).flatMap(([verb, vars]) => vars.map((v) => [verb, v] as const));
  it.each(cases)('%s without %s fails with code 4 naming it', (verb, missing) => {
    const env: Record<string, string | undefined> = { CNI_COMMAND: verb, ...FULL };
    delete env[missing];
    const e = caught(() => parseEnv(env));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`required env variables [${missing}] missing`);
  });

  it.each(cases)('%s with an empty %s counts it as missing', (verb, missing) => {
    const e = caught(() => parseEnv({ CNI_COMMAND: verb, ...FULL, [missing]: '' }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`required env variables [${missing}] missing`);
  });

  it('DEL names both missing variables in order', () => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'DEL', CNI_NETNS: '/x' }));
    expect(e.message).toBe('required env variables [CNI_CONTAINERID,CNI_IFNAME] missing');
    expect(e.details).toBe('CNI_COMMAND=DEL needs CNI_CONTAINERID, CNI_IFNAME');
  });

  it.each([['FOO'], ['add']])('unknown CNI_COMMAND %j is code 4', (cmd) => {
    const e = caught(() => parseEnv({ CNI_COMMAND: cmd, ...FULL }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`unknown CNI_COMMAND: ${cmd}`);
  });

  it('unset CNI_COMMAND is code 4', () => {
    expect(caught(() => parseEnv({ ...FULL })).code).toBe(4);
  });
});

describe('container id', () => {
  it.each([['a'], ['0'], ['ctr1'], ['0abc'], ['a_b.c-d'], ['A.B_C-9'], ['f'.repeat(64)], ['a'.repeat(255)]])('accepts %j', (id) => {
    expect(validateContainerId(id)).toBeUndefined();
    expect(parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_CONTAINERID: id }).containerId).toBe(id);
  });

  it.each([['-abc'], ['_abc'], ['.abc'], ['a/b'], ['../x'], ['a b'], ['a;b'], ['a:b'], ['é'], ['a\nb'], ['a\0b']])('refuses %j with code 4', (id) => {
    expect(validateContainerId(id)).toBe('must start with a letter or digit and hold only letters, digits, "_", "." and "-"');
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_CONTAINERID: id }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(
      `invalid env variables: CNI_CONTAINERID ${JSON.stringify(id)} must start with a letter or digit and hold only letters, digits, "_", "." and "-"`,
    );
  });

  it('refuses 256 characters', () => {
    const id = 'a'.repeat(256);
    expect(validateContainerId(id)).toBe('is longer than 255 characters');
    const e = caught(() => parseEnv({ CNI_COMMAND: 'DEL', ...FULL, CNI_CONTAINERID: id }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`invalid env variables: CNI_CONTAINERID "${id}" is longer than 255 characters`);
  });
});

describe('ifname', () => {
  it.each([['eth0'], ['a'], ['net1.100'], ['x'.repeat(15)], ['é'.repeat(7)], ['-'], ['a-b_c'], ['...']])('accepts %j', (name) => {
    expect(validateIfname(name)).toBeUndefined();
    expect(parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_IFNAME: name }).ifname).toBe(name);
  });

  it('counts bytes, not characters', () => {
    // 8 × "é" is 8 characters but 16 bytes.
    expect(validateIfname('é'.repeat(8))).toBe('is 16 bytes long; the kernel allows at most 15');
  });

  it('refuses 16 bytes', () => {
    const name = 'x'.repeat(16);
    expect(validateIfname(name)).toBe('is 16 bytes long; the kernel allows at most 15');
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_IFNAME: name }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`invalid env variables: CNI_IFNAME "${name}" is 16 bytes long; the kernel allows at most 15`);
  });

  it('refuses the empty name', () => {
    expect(validateIfname('')).toBe('is empty');
  });

  it.each([['.'], ['..']])('refuses %j', (name) => {
    expect(validateIfname(name)).toBe('may not be "." or ".."');
    const e = caught(() => parseEnv({ CNI_COMMAND: 'CHECK', ...FULL, CNI_IFNAME: name }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`invalid env variables: CNI_IFNAME ${JSON.stringify(name)} may not be "." or ".."`);
  });

  // Go's unicode.IsSpace, which the reference ValidateInterfaceName uses, includes
  // U+0085 (NEL) and U+00A0 (NBSP) as well as the ASCII spaces.
  const esc = (s: string) => JSON.stringify(s).replace(/[\u007f-\u00a0\u2000-\u200f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
  it.each(['a/b', '/', 'a:b', ':', ' eth0', 'eth 0', 'eth0 ', 'a\tb', 'a\nb', 'a\rb', 'a\vb', 'a\fb', 'a\u00a0b', 'a\u2003b', 'a\u0085b'].map((n) => [esc(n), n]))(
    'refuses %s ("/", ":" or whitespace)',
    (_label, name) => {
      expect(validateIfname(name)).toBe('may not contain "/", ":" or whitespace');
      const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_IFNAME: name }));
      expect(e.code).toBe(4);
      expect(e.message).toBe(`invalid env variables: CNI_IFNAME ${JSON.stringify(name)} may not contain "/", ":" or whitespace`);
    },
  );

  it.each(['a\u0000b', 'a\u0001', '\u001b[31m', 'a\u007f', 'a\u009b'].map((n) => [esc(n), n]))('refuses control characters in %s', (_label, name) => {
    expect(validateIfname(name)).toBe('may not contain control characters');
    expect(caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_IFNAME: name })).code).toBe(4);
  });
});

describe('netns path', () => {
  it.each([['/var/run/netns/ns1'], ['/proc/1234/ns/net'], ['/run/netns/..x'], ['/a/b..']])('accepts %j', (p) => {
    expect(parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_NETNS: p }).netns).toBe(p);
  });

  it.each([['var/run/netns/ns1'], ['./ns1'], ['ns1'], ['../ns1']])('refuses relative %j', (p) => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_NETNS: p }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`invalid env variables: CNI_NETNS ${JSON.stringify(p)} must be an absolute path`);
  });

  it.each([['/var/run/netns/../../etc/passwd'], ['/..'], ['/var/..']])('refuses ".." in %j', (p) => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_NETNS: p }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`invalid env variables: CNI_NETNS ${JSON.stringify(p)} may not contain ".."`);
  });

  it.each([['/var/run/netns/a\0b'], ['/var/run/netns/a\nb']])('refuses NUL and control characters in %j', (p) => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, CNI_NETNS: p }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(`invalid env variables: CNI_NETNS ${JSON.stringify(p)} may not contain NUL or control characters`);
  });

  it('validates CNI_NETNS on DEL when it is set', () => {
    expect(caught(() => parseEnv({ CNI_COMMAND: 'DEL', ...FULL, CNI_NETNS: 'relative' })).code).toBe(4);
  });
});

describe('parseEnv: validation of what is set', () => {
  it('reports every problem at once', () => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: '-x', CNI_IFNAME: 'a/b', CNI_NETNS: 'rel' }));
    expect(e.code).toBe(4);
    expect(e.message).toBe(
      'invalid env variables: CNI_CONTAINERID "-x" must start with a letter or digit and hold only letters, digits, "_", "." and "-"; ' +
        'CNI_IFNAME "a/b" may not contain "/", ":" or whitespace; CNI_NETNS "rel" must be an absolute path',
    );
  });

  it('GC and STATUS validate what is set', () => {
    expect(caught(() => parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin', CNI_IFNAME: '..' })).code).toBe(4);
    expect(caught(() => parseEnv({ CNI_COMMAND: 'STATUS', CNI_CONTAINERID: '../x' })).code).toBe(4);
  });

  it('GC and STATUS accept empty strings for the unused variables', () => {
    expect(parseEnv({ CNI_COMMAND: 'GC', CNI_PATH: '/opt/cni/bin', CNI_CONTAINERID: '', CNI_IFNAME: '', CNI_NETNS: '' }).verb).toBe('GC');
    expect(parseEnv({ CNI_COMMAND: 'STATUS', CNI_CONTAINERID: '', CNI_IFNAME: '', CNI_NETNS: '' }).verb).toBe('STATUS');
  });

  it('missing variables are reported before invalid ones', () => {
    const e = caught(() => parseEnv({ CNI_COMMAND: 'ADD', CNI_CONTAINERID: '-x', CNI_IFNAME: 'eth0' }));
    expect(e.message).toBe('required env variables [CNI_NETNS] missing');
  });
});

describe('parseEnv: NHI_CNI_RUN_DIR (fuzz finding: an unusable run dir crashed ADD mid-way)', () => {
  it.each([['/run/nhi-cni'], ['/tmp/x/run']])('accepts %j', (dir) => {
    expect(() => parseEnv({ CNI_COMMAND: 'ADD', ...FULL, NHI_CNI_RUN_DIR: dir })).not.toThrow();
  });

  it.each([['run', 'must be an absolute path'], ['/run/../etc', 'may not contain ".."'], [`/run/${'r'.repeat(256)}`, 'has a component longer than 255 bytes'], ['/run/a\nb', 'may not contain NUL or control characters']])(
    'refuses %j with code 4: %s',
    (dir, why) => {
      const e = caught(() => parseEnv({ CNI_COMMAND: 'DEL', ...FULL, NHI_CNI_RUN_DIR: dir }));
      expect(e.code).toBe(4);
      expect(e.message).toBe(`invalid env variables: NHI_CNI_RUN_DIR ${JSON.stringify(dir)} ${why}`);
    },
  );
});
