#!/usr/bin/env node
// Compiles src/kernels/*.cu to PTX for each target in TARGETS with nvcc, into ptx/ (checked in,
// so that the package builds where nvcc is absent, as in CI), and records in ptx/manifest.json
// the sources' hash and the nvcc version. At run time cuModuleLoadData JITs the PTX of the
// highest target not above the GPU's compute capability.
//
//   node scripts/build-ptx.mjs           compile when the sources changed since the manifest
//   node scripts/build-ptx.mjs --force   compile anyway
//   node scripts/build-ptx.mjs --out DIR compile into DIR (the freshness test compares it with ptx/)
//
// Without nvcc: fine when the checked-in PTX matches the sources; an error when it does not.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const pkg = join(dirname(fileURLToPath(import.meta.url)), '..');
const srcDir = join(pkg, 'src', 'kernels');
/**
 * PTX targets. CUDA 13's nvcc lists compute_75 as its oldest (Turing; Volta's sm_70 was dropped);
 * PTX for 7.5 runs on every later GPU through the driver's JIT, 8.0 (Ampere) and 9.0 (Hopper)
 * let the JIT use their newer instructions.
 */
export const TARGETS = ['75', '80', '90'];

export function sourceFiles() {
  return readdirSync(srcDir)
    .filter((f) => f.endsWith('.cu') || f.endsWith('.cuh'))
    .sort();
}

/** sha256 over the kernel sources (name and contents) and the targets. */
export function sourceHash() {
  const h = createHash('sha256');
  h.update(`targets:${TARGETS.join(',')}\n`);
  for (const f of sourceFiles()) {
    h.update(`${f}\n`);
    h.update(readFileSync(join(srcDir, f)));
  }
  return h.digest('hex');
}

export function findNvcc() {
  const candidates = [process.env.NVCC, 'nvcc', '/usr/local/cuda/bin/nvcc'];
  if (existsSync('/usr/local')) {
    for (const d of readdirSync('/usr/local')
      .filter((d) => d.startsWith('cuda-'))
      .sort()
      .reverse()) {
      candidates.push(join('/usr/local', d, 'bin', 'nvcc'));
    }
  }
  for (const c of candidates) {
    if (!c) continue;
    try {
      const v = execFileSync(c, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      return { path: c, version: /release ([\d.]+), (V[\d.]+)/.exec(v)?.[2] ?? 'unknown' };
    } catch {}
  }
  return undefined;
}

/** Writes a file through a temporary name and a rename, so a reader never sees half of it. */
function writeAtomic(path, text) {
  const tmp = `${path}.tmp-${process.pid}`;
  writeFileSync(tmp, text);
  renameSync(tmp, path);
}

export function compileAll(nvcc, outDir) {
  mkdirSync(outDir, { recursive: true });
  const kernels = sourceFiles().filter((f) => f.endsWith('.cu'));
  const files = [];
  for (const f of kernels) {
    for (const t of TARGETS) {
      const name = `${f.replace(/\.cu$/, '')}.sm_${t}.ptx`;
      const tmp = join(outDir, `${name}.tmp-${process.pid}`);
      // nice: the build shares its machine; -O3, no -lineinfo (it would embed this checkout's paths).
      execFileSync(
        'nice',
        [
          '-n',
          '19',
          nvcc.path,
          '-ptx',
          `-arch=compute_${t}`,
          '-O3',
          '-std=c++17',
          '-I',
          srcDir,
          '-o',
          tmp,
          join(srcDir, f),
        ],
        { stdio: ['ignore', 'inherit', 'inherit'] },
      );
      renameSync(tmp, join(outDir, name));
      files.push(name);
    }
  }
  return files;
}

function main() {
  const args = process.argv.slice(2);
  const force = args.includes('--force');
  const outIdx = args.indexOf('--out');
  const outDir = outIdx >= 0 ? args[outIdx + 1] : join(pkg, 'ptx');
  const manifestPath = join(outDir, 'manifest.json');
  const hash = sourceHash();
  if (!force && outIdx < 0 && existsSync(manifestPath)) {
    const m = JSON.parse(readFileSync(manifestPath, 'utf8'));
    if (m.sourceHash === hash) {
      console.log(`build-ptx: ptx/ is up to date with src/kernels (nvcc ${m.nvcc})`);
      return;
    }
  }
  const nvcc = findNvcc();
  if (!nvcc) {
    console.error(
      'build-ptx: the CUDA sources changed since ptx/ was compiled and nvcc was not found ' +
        '(set NVCC or install the CUDA toolkit); rerun `node scripts/build-ptx.mjs` where nvcc exists',
    );
    process.exit(1);
  }
  const files = compileAll(nvcc, outDir);
  // The short targets list on one line, as the repository's formatter (biome) writes it.
  const json = JSON.stringify(
    { sourceHash: hash, nvcc: nvcc.version, targets: TARGETS, files },
    null,
    2,
  ).replace(/"targets": \[[^\]]*\]/, `"targets": [${TARGETS.map((t) => `"${t}"`).join(', ')}]`);
  writeAtomic(manifestPath, `${json}\n`);
  console.log(`build-ptx: compiled ${files.length} PTX files with nvcc ${nvcc.version} into ${outDir}`);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main();
