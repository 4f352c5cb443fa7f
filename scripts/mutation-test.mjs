#!/usr/bin/env node
// Mutation testing: plants each fault of scripts/mutations.json in a scratch copy of the working
// tree and runs only the tests named for it, which must go red. A suite that stays green with a
// fault planted cannot catch that fault, so each entry documents (and keeps checking) that a
// named test exists for a bug we care about.
//
//   pnpm mutation                     every mutation
//   pnpm mutation --only a,b          just these ids
//   pnpm mutation --list              print the ids and descriptions
//   pnpm mutation --keep              keep the scratch copy (its path is printed)
//   pnpm mutation --timeout 300       seconds per vitest run (default 600)
//   pnpm mutation --json              also print the summary as JSON
//   pnpm mutation --file other.json   another list of mutations (default scripts/mutations.json)
//
// Each mutation: { id, description, file, find, replace, tests: [test files], testName? } (or
// `edits: [{ file, find, replace }]` for a fault spanning several places). `find` must occur
// exactly once in its file, else the mutation is reported stale (the code moved on: update it).
// The tests run from a copy of the tree (so nobody's working files are touched), node_modules
// symlinked. Results: killed (a named test failed), survived (all passed: the suite misses the
// fault), stale, or error (no test ran: a load error or a testName that matches nothing).
// Exit code 0 only when every mutation was killed.
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};

const listPath = option('--file') ?? join(root, 'scripts', 'mutations.json');
const { mutations } = JSON.parse(readFileSync(listPath, 'utf8'));
const only = option('--only')?.split(',');
if (only) {
  const unknown = only.filter((id) => !mutations.some((m) => m.id === id));
  if (unknown.length > 0) {
    console.error(`mutation-test: unknown id(s) ${unknown.join(', ')} (see --list)`);
    process.exit(2);
  }
}
const selected = only ? mutations.filter((m) => only.includes(m.id)) : mutations;
if (flag('--list')) {
  for (const m of selected) console.log(`${m.id}\n    ${m.description}\n    → ${m.tests.join(' ')}`);
  process.exit(0);
}
const timeoutS = Number(option('--timeout') ?? 600);

// One scratch copy for the whole run; each mutation is applied there and undone afterwards.
const scratch = mkdtempSync(join(tmpdir(), 'dictlearn-mutation-'));
const skip = new Set(['.git', '.venv', 'artifacts', 'coverage', '.gl', '.whl', join('apps', 'docs', 'site')]);
cpSync(root, scratch, {
  recursive: true,
  verbatimSymlinks: true,
  filter: (src) => {
    const rel = relative(root, src);
    return rel === '' || !(skip.has(rel) || rel === 'node_modules' || rel.startsWith(`node_modules${sep}`));
  },
});
// Package-level node_modules are copied (relative links into the root one); the root one is linked.
symlinkSync(join(root, 'node_modules'), join(scratch, 'node_modules'), 'dir');

/** Runs vitest on `tests` in the scratch copy: { passed, failed, message }. */
function runTests(tests, testName) {
  const out = join(scratch, '.mutation-report.json');
  rmSync(out, { force: true });
  const argv = ['run', ...tests, '--reporter=json', `--outputFile=${out}`];
  if (testName) argv.push('-t', testName);
  const r = spawnSync(join(scratch, 'node_modules', '.bin', 'vitest'), argv, {
    cwd: scratch,
    encoding: 'utf8',
    timeout: timeoutS * 1000,
    env: { ...process.env, CI: '1' },
  });
  if (r.error?.code === 'ETIMEDOUT' || r.signal) {
    // A fault that makes a test hang is caught too, but say so.
    return { passed: 0, failed: 1, message: `timed out after ${timeoutS}s` };
  }
  if (!existsSync(out)) return { passed: 0, failed: 0, message: (r.stderr || r.stdout).slice(-400) };
  const report = JSON.parse(readFileSync(out, 'utf8'));
  const loadErrors = report.testResults.filter(
    (f) => f.status === 'failed' && f.assertionResults.length === 0,
  );
  const firstFailure = report.testResults
    .flatMap((f) => f.assertionResults)
    .find((a) => a.status === 'failed');
  return {
    passed: report.numPassedTests,
    failed: report.numFailedTests,
    loadError: loadErrors.map((f) => f.message).join(' | ') || undefined,
    message: firstFailure
      ? `${firstFailure.fullName}: ${String(firstFailure.failureMessages?.[0] ?? '').split('\n')[0]}`
      : undefined,
  };
}

const edits = (m) => m.edits ?? [{ file: m.file, find: m.find, replace: m.replace }];
const results = [];

// Baseline: the named tests must pass on the unmutated tree, or "killed" would mean nothing.
const allTests = [...new Set(selected.flatMap((m) => m.tests))].filter((t) => existsSync(join(scratch, t)));
const base = runTests(allTests);
if (base.failed > 0 || base.loadError || base.passed === 0) {
  console.error(
    `mutation-test: the named tests are not green without mutations (${base.failed} failed): ${
      base.loadError ?? base.message ?? ''
    }`,
  );
  process.exit(2);
}
console.log(`baseline: ${base.passed} tests green in ${allTests.length} files`);

for (const m of selected) {
  const originals = new Map();
  let status;
  let detail = '';
  const missing = m.tests.filter((t) => !existsSync(join(scratch, t)));
  try {
    for (const e of edits(m)) {
      const path = join(scratch, e.file);
      const text = originals.get(path) ?? (existsSync(path) ? readFileSync(path, 'utf8') : undefined);
      const count = text === undefined ? 0 : text.split(e.find).length - 1;
      if (count !== 1) {
        status = 'stale';
        detail = `${e.file}: 'find' occurs ${count} times (expected exactly once)`;
        break;
      }
      if (!originals.has(path)) originals.set(path, text);
      writeFileSync(
        path,
        readFileSync(path, 'utf8').replace(e.find, () => e.replace),
      );
    }
    if (!status && missing.length > 0) {
      status = 'stale';
      detail = `test file(s) not found: ${missing.join(', ')}`;
    }
    if (!status) {
      const r = runTests(m.tests, m.testName);
      if (r.failed > 0) {
        status = 'killed';
        detail = r.message ?? '';
      } else if (r.loadError || r.passed === 0) {
        status = 'error';
        detail = r.loadError ?? r.message ?? 'no test ran (does testName match?)';
      } else {
        status = 'survived';
        detail = `${r.passed} tests passed with the fault planted`;
      }
    }
  } finally {
    for (const [path, text] of originals) writeFileSync(path, text);
  }
  results.push({ id: m.id, status, detail: detail.replace(/\s+/g, ' ').slice(0, 200) });
  console.log(`${status.padEnd(8)} ${m.id}  ${results.at(-1).detail}`);
}

const count = (s) => results.filter((r) => r.status === s).length;
const summary = {
  killed: count('killed'),
  survived: count('survived'),
  stale: count('stale'),
  error: count('error'),
  results,
};
console.log(
  `\nkilled ${summary.killed}, survived ${summary.survived}, stale ${summary.stale}, error ${summary.error}` +
    ` of ${results.length}`,
);
if (flag('--json')) console.log(JSON.stringify(summary, null, 2));
if (flag('--keep')) console.log(`scratch copy kept at ${scratch}`);
else rmSync(scratch, { recursive: true, force: true });
process.exit(summary.killed === results.length ? 0 : 1);
