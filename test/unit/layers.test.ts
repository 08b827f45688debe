// Import direction between the source folders (issue 8). The layers, lowest
// first: cni, net, sys (the protocol, addresses, the kernel's tools) — then
// policy (the model, the compiler and the engine) — then chain (the modules,
// which call the engine) — then plugin and cli (the entry points). A folder
// may import its own layer and the ones below, never one above: an upward
// import is how a cycle starts, and the agent will reuse chain and policy
// without the CNI entry points. Type-only imports count too: they still tie a
// lower folder's meaning to a higher one's.
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = resolve(dirname(fileURLToPath(import.meta.url)), '../../src');

/** For each folder, the folders it must not import from. */
// The agent (src/agent) sits beside plugin and cli: it uses chain and policy,
// and only the CLI names it (options.ts and types; the code itself is loaded
// as a separate bundle, src/lazy.ts, see test/plugin/agent-bundle.test.ts).
const FORBIDDEN: Record<string, readonly string[]> = {
  cni: ['chain', 'policy', 'plugin', 'cli', 'agent', 'l7'],
  net: ['chain', 'policy', 'plugin', 'cli', 'agent', 'l7'],
  sys: ['chain', 'policy', 'plugin', 'cli', 'agent', 'l7'],
  chain: ['plugin', 'cli', 'agent', 'l7'],
  // The chain calls the policy engine (src/policy/engine), never the reverse: a cycle otherwise.
  policy: ['chain', 'plugin', 'cli', 'agent', 'l7'],
  plugin: ['cli', 'agent', 'l7'],
  agent: ['plugin', 'cli'],
  // The L7 proxy (issue 13) sits on policy, beside chain; the agent runs it.
  l7: ['chain', 'plugin', 'cli', 'agent'],
};

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sourceFiles(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : [],
  );
}

/** Every module specifier a file names: static imports and re-exports (also multi-line and `import type`), bare imports, dynamic import(). */
function specifiers(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const found: string[] = [];
  const patterns = [/\b(?:import|export)\b[^;'"]*?\bfrom\s*['"]([^'"]+)['"]/g, /\bimport\s*['"]([^'"]+)['"]/g, /\bimport\s*\(\s*['"]([^'"]+)['"]\s*\)/g];
  for (const re of patterns) for (const m of code.matchAll(re)) found.push(m[1]!);
  return found;
}

/** The top folder under src/ a relative specifier lands in, or undefined for packages and files at src/'s top. */
function targetFolder(file: string, spec: string): string | undefined {
  if (!spec.startsWith('.')) return undefined;
  const rel = relative(SRC, resolve(dirname(file), spec)).split('/');
  return rel.length > 1 && rel[0] !== '..' ? rel[0] : undefined;
}

function violations(): string[] {
  const out: string[] = [];
  for (const file of sourceFiles(SRC)) {
    const folder = relative(SRC, file).split('/')[0]!;
    const forbidden = FORBIDDEN[folder];
    if (!forbidden) continue;
    for (const spec of specifiers(readFileSync(file, 'utf8'))) {
      const target = targetFolder(file, spec);
      if (target && forbidden.includes(target)) out.push(`src/${relative(SRC, file)} imports ${spec} (${folder} may not import ${target})`);
    }
  }
  return out.sort();
}

describe('import direction', () => {
  it('finds the import forms the check relies on', () => {
    const text = [
      "import { a } from '../chain/x.js';",
      "import type {\n  B,\n  C,\n} from '../plugin/y.js';",
      "export { d } from '../cli/z.js';",
      "import '../policy/side.js';",
      "const m = await import('../plugin/lazy.js');",
      "// import { gone } from '../cli/comment.js';",
    ].join('\n');
    expect(specifiers(text).sort()).toEqual(['../chain/x.js', '../cli/z.js', '../plugin/lazy.js', '../plugin/y.js', '../policy/side.js']);
  });

  it('sees every source folder it rules on', () => {
    const folders = new Set(sourceFiles(SRC).map((f) => relative(SRC, f).split('/')[0]));
    for (const f of [...Object.keys(FORBIDDEN), 'cli']) expect(folders).toContain(f);
  });

  it('no folder imports from a layer above it', () => {
    expect(violations()).toEqual([]);
  });
});
