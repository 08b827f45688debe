// zod for the CNI path: the functional `zod/mini` API, whose unused parts a
// bundler leaves out, instead of the classic one, which attaches every method
// to every schema and is most of what a start-up snapshot holds otherwise
// (docs/benchmarks.md, issue 12). Same parser core, so the same accepted and
// refused inputs. Import it as a namespace (`import * as z from
// '.../cni/zod.js'`): zod/mini's own `z` export is one object holding the
// whole API, which keeps all of it in the bundle. Mini loads no locale by
// itself, so English, classic's default, is configured here, before any
// schema parses.
import { config } from 'zod/mini';
import en from 'zod/v4/locales/en.js';

config(en());

export * from 'zod/mini';
