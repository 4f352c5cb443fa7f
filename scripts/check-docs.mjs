#!/usr/bin/env node
// Checks the conventions every workspace package keeps (the design's "Tooling" conventions):
//   - a README.md with a runnable example in a fenced ```ts block;
//   - "type": "module" in package.json;
//   - packages/ only: an `exports` map in which every condition object lists `types` first;
//   - co-located tests: a package with a src/ folder has at least one src/**/*.test.ts.
// And at the root: the README's "Set up" block holds exactly two commands, and .ci/run runs the
// second one verbatim (CI must run what a user runs).
// Prints one line per failure and exits 1 when there is any.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const failures = [];
const fail = (dir, message) => failures.push(`${relative(root, dir) || '.'}: ${message}`);

function packageDirs(group) {
  const base = join(root, group);
  if (!existsSync(base)) return [];
  return readdirSync(base, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(base, e.name, 'package.json')))
    .map((e) => join(base, e.name))
    .sort();
}

function walk(dir, found = []) {
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    if (e.name === 'node_modules' || e.name === 'dist') continue;
    const p = join(dir, e.name);
    if (e.isDirectory()) walk(p, found);
    else found.push(p);
  }
  return found;
}

/**
 * Checks one exports target. A condition object must list `types` first (nested objects may
 * omit it when an outer object already gave `types`); a JS file reached with no `types`
 * condition on the way is a failure.
 */
function checkTarget(dir, subpath, target, typed = false) {
  if (target === null) return;
  if (typeof target === 'string') {
    if (!typed && /\.[cm]?js$/.test(target)) {
      fail(dir, `exports["${subpath}"] points at ${target} with no "types" condition`);
    }
    return;
  }
  if (Array.isArray(target)) {
    for (const t of target) checkTarget(dir, subpath, t, typed);
    return;
  }
  if (typeof target === 'object') {
    const keys = Object.keys(target);
    if (keys.length === 0) {
      fail(dir, `exports["${subpath}"] is an empty condition object`);
      return;
    }
    if (keys.includes('types') ? keys[0] !== 'types' : !typed) {
      fail(dir, `exports["${subpath}"] lists conditions [${keys.join(', ')}]: "types" must come first`);
    }
    const nowTyped = typed || keys.includes('types');
    for (const k of keys) if (k !== 'types') checkTarget(dir, `${subpath}" > "${k}`, target[k], nowTyped);
    return;
  }
  fail(dir, `exports["${subpath}"] has an unexpected value ${JSON.stringify(target)}`);
}

function checkExports(dir, pkg) {
  const exp = pkg.exports;
  if (exp === undefined) {
    fail(dir, 'package.json has no "exports" map');
    return;
  }
  if (typeof exp === 'object' && exp !== null && !Array.isArray(exp)) {
    const keys = Object.keys(exp);
    const subpaths = keys.filter((k) => k.startsWith('.'));
    if (subpaths.length > 0 && subpaths.length !== keys.length) {
      fail(dir, '"exports" mixes subpaths (".", "./x") and conditions at the top level');
      return;
    }
    if (subpaths.length > 0) {
      if (!('.' in exp)) fail(dir, '"exports" has no "." entry');
      for (const k of subpaths) {
        if (k === './package.json') continue;
        checkTarget(dir, k, exp[k]);
      }
      return;
    }
  }
  checkTarget(dir, '.', exp);
}

function checkPackage(dir, { library }) {
  let pkg;
  try {
    pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8'));
  } catch (e) {
    fail(dir, `package.json cannot be read: ${e.message}`);
    return;
  }

  const readme = join(dir, 'README.md');
  if (!existsSync(readme)) {
    fail(dir, 'no README.md');
  } else if (!/^ {0,3}(```|~~~)\s*(ts|typescript)\b/im.test(readFileSync(readme, 'utf8'))) {
    fail(dir, 'README.md has no runnable example (a fenced ```ts code block)');
  }

  if (pkg.type !== 'module') {
    fail(dir, `package.json "type" is ${JSON.stringify(pkg.type)}, expected "module"`);
  }

  if (library) checkExports(dir, pkg);

  const src = join(dir, 'src');
  if (existsSync(src) && statSync(src).isDirectory()) {
    if (!walk(src).some((f) => f.endsWith('.test.ts'))) {
      fail(dir, 'no co-located tests (src/**/*.test.ts)');
    }
  } else if (library) {
    fail(dir, 'no src/ folder');
  }
}

const libraries = packageDirs('packages');
// The examples package is an app (private, no exports map) at the top level.
const apps = [
  ...packageDirs('apps'),
  ...(existsSync(join(root, 'examples/package.json')) ? [join(root, 'examples')] : []),
];
for (const dir of libraries) checkPackage(dir, { library: true });
for (const dir of apps) checkPackage(dir, { library: false });

/**
 * Documentation must stand on its own in a clone or a published package: no Markdown link of a
 * README or a guide may point outside the repository (e.g. at a sibling checkout's notes).
 */
function checkLinksStayInside(file) {
  const text = readFileSync(file, 'utf8');
  for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue;
    const resolved = join(file, '..', target.split('#')[0]);
    if (relative(root, resolved).startsWith('..')) fail(file, `links outside the repository: ${target}`);
  }
}
const guides = join(root, 'apps/docs/guides');
for (const f of [
  join(root, 'README.md'),
  ...[...libraries, ...apps].map((d) => join(d, 'README.md')).filter((f) => existsSync(f)),
  ...(existsSync(guides)
    ? readdirSync(guides)
        .filter((f) => f.endsWith('.md'))
        .map((f) => join(guides, f))
    : []),
]) {
  checkLinksStayInside(f);
}

/** The root README's set-up commands: the non-comment lines of the first sh block under "## Set up". */
function checkSetUpCommands() {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const section = readme.split(/^## Set up\s*$/m)[1];
  const block = section && /```sh\n([\s\S]*?)```/.exec(section);
  if (!block) {
    fail(root, 'README.md has no "## Set up" section with a ```sh block');
    return;
  }
  const commands = block[1].split('\n').filter((l) => l.trim() && !l.trim().startsWith('#'));
  if (commands.length !== 2) {
    fail(root, `README.md "Set up" holds ${commands.length} commands, expected exactly 2`);
    return;
  }
  const ci = readFileSync(join(root, '.ci/run'), 'utf8');
  if (!ci.split('\n').some((l) => l.trim() === commands[1].trim())) {
    fail(root, `.ci/run does not run the README's command 2 verbatim: ${commands[1].trim()}`);
  }
}
checkSetUpCommands();

if (failures.length > 0) {
  for (const f of failures) console.error(`check-docs: ${f}`);
  console.error(`check-docs: ${failures.length} problem(s) in ${libraries.length + apps.length} packages`);
  process.exit(1);
}
console.log(`check-docs: ${libraries.length + apps.length} packages OK`);
