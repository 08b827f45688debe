// Ends the run with one plain line, "N passed, N failed, N skipped", which CI
// systems read regardless of the test runner. A test that never ran because a
// hook of its suite or file failed (a beforeAll that threw) counts as failed,
// not skipped: the line must not say "0 failed" on a red run.
import type { Reporter, TestCase, TestModule } from 'vitest/node';

/** A suite or file around the test that failed on its own (a hook, an import). */
function failedAround(t: TestCase): boolean {
  for (let p: TestCase['parent'] | undefined = t.parent; p; p = p.type === 'suite' ? p.parent : undefined) {
    if (p.errors().length > 0) return true;
  }
  return false;
}

export default class SummaryReporter implements Reporter {
  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const n = { passed: 0, failed: 0, skipped: 0 };
    for (const m of modules) {
      for (const t of m.children.allTests()) {
        const s = t.result().state;
        if (s === 'passed') n.passed++;
        else if (s === 'failed' || failedAround(t)) n.failed++;
        else n.skipped++;
      }
    }
    process.stdout.write(`\n${n.passed} passed, ${n.failed} failed, ${n.skipped} skipped\n`);
  }
}
