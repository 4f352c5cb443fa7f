import type { RunnerTask, RunnerTestFile } from 'vitest';
import type { Reporter } from 'vitest/reporters';

/**
 * Prints one plain closing line, `tests: N passed, N failed, N skipped`, after vitest's own
 * report (this reporter is listed after the default one), so CI logs end with the totals in a
 * fixed form.
 */
export default class SummaryReporter implements Reporter {
  onFinished(files: RunnerTestFile[] = []): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    const visit = (t: RunnerTask) => {
      if (t.type === 'test') {
        const state = t.result?.state;
        if (state === 'pass') passed++;
        else if (state === 'fail') failed++;
        else skipped++;
      } else if ('tasks' in t) for (const c of t.tasks) visit(c);
    };
    for (const f of files) {
      visit(f);
      // A file that failed to load ran no test but is a failure all the same.
      if (f.result?.state === 'fail' && f.tasks.length === 0) failed++;
    }
    setImmediate(() =>
      process.stdout.write(`tests: ${passed} passed, ${failed} failed, ${skipped} skipped\n`),
    );
  }
}
