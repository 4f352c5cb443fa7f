// Shared by this package's tests (not exported, not built): backend and plugin set-up, the
// fixture folders, closeness checks, and finding a Python with torch + safetensors.
import '@dictlearn/arch-gated/register';
import '@dictlearn/arch-jumprelu/register';
import '@dictlearn/arch-standard/register';
import '@dictlearn/arch-topk/register';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createCpuBackend } from '@dictlearn/backend-cpu';
import { createArchitecture, findBackend, registerBackend, useBackend } from '@dictlearn/core';
import { expect } from 'vitest';

/** The CPU backend, registered once and selected. */
export async function useCpu(): Promise<void> {
  if (!findBackend('cpu')) registerBackend(createCpuBackend({ name: 'cpu', fastMatmul: false }));
  await useBackend('cpu');
}

/** The fixture folder written by fixtures/make-fixtures.py. */
export const FIXTURES = fileURLToPath(new URL('../fixtures/files/', import.meta.url));

/** The repository root. */
export const REPO = fileURLToPath(new URL('../../../', import.meta.url));

/** What make-fixtures.py stored beside each case. */
export interface Expected {
  x: number[][];
  features: number[][];
  reconstruction: number[][];
  architecture: string;
  config: Record<string, unknown>;
}

/** A case's expected.json. */
export function expected(dir: string): Expected {
  return JSON.parse(readFileSync(`${dir}/expected.json`, 'utf8')) as Expected;
}

/** |a − b| ≤ atol + rtol·|b| for every element, with the worst offender in the failure message. */
export function expectClose(
  actual: ArrayLike<number>,
  want: ArrayLike<number>,
  atol = 1e-5,
  rtol = 1e-5,
): void {
  expect(actual.length).toBe(want.length);
  let worst = -1;
  let excess = 0;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(actual[i] - want[i]) - (atol + rtol * Math.abs(want[i]));
    if (!(e <= excess) || Number.isNaN(actual[i])) {
      excess = Number.isNaN(actual[i]) ? Number.POSITIVE_INFINITY : e;
      worst = i;
    }
  }
  if (worst >= 0) {
    expect.fail(
      `element ${worst}: got ${actual[worst]}, want ${want[worst]} (±${atol + rtol * Math.abs(want[worst])})`,
    );
  }
}

let python: { cmd: string } | { reason: string } | undefined;

/**
 * A Python with torch and safetensors: the repository's .venv if it has them, else python3; or
 * the reason there is none (tests that need it skip with that reason).
 */
export function findPython(): { cmd: string } | { reason: string } {
  if (python) return python;
  const candidates = [`${REPO}.venv/bin/python`, 'python3'].filter((c) => c === 'python3' || existsSync(c));
  const reasons: string[] = [];
  for (const cmd of candidates) {
    const r = spawnSync(cmd, ['-c', 'import torch, safetensors'], { encoding: 'utf8' });
    if (r.status === 0) {
      python = { cmd };
      return python;
    }
    reasons.push(
      `${cmd}: ${r.error ? r.error.message : (r.stderr.trim().split('\n').pop() ?? `exit ${r.status}`)}`,
    );
  }
  python = { reason: `no Python with torch and safetensors (${reasons.join('; ')})` };
  return python;
}

/** Seeded uniform [0, 1) numbers (mulberry32), for test dictionaries. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Whether `format` can hold the architecture (the table of the README). */
export function holds(format: string, name: string, config: Record<string, unknown>): boolean {
  if (format === 'sparsify') return name === 'topk';
  if (format === 'dictionary_learning') return !(name === 'jumprelu' && config.applyBDecToInput === true);
  return true;
}

/** Every architecture with a test config (hyper-parameters away from their defaults). */
export const TEST_ARCHS: [string, Record<string, unknown>][] = [
  ['standard', { l1Penalty: 0.05 }],
  ['april-update', { l1Penalty: 0.2 }],
  ['tied', { l1Penalty: 0.1 }],
  ['p-anneal', { sparsityPenalty: 0.2, pEnd: 0.3, annealStart: 100, annealEnd: 500, sparsityUpdates: 4 }],
  ['topk', { k: 3, auxkAlpha: 0.05 }],
  ['batch-topk', { k: 3, thresholdBeta: 0.99 }],
  ['matryoshka-batch-topk', { k: 3, groups: [4, 4, 8], weights: [0.5, 0.25, 0.25] }],
  ['jumprelu', { targetL0: 5, bandwidth: 0.05 }],
  ['jumprelu', { applyBDecToInput: true, penalty: 'l0', sparsityPenalty: 0.01 }],
  ['gated', { l1Penalty: 0.2 }],
  ['gated-anneal', { sparsityPenalty: 0.1, annealStart: 10 }],
];

/**
 * A dictionary of `name` with random parameters of every kind (non-zero biases, decoder rows
 * of unequal norms, a learned BatchTopK threshold, JumpReLU thresholds θ in [0.05, 0.35] so
 * |log θ| > 1), as host parts.
 */
export function randomParts(name: string, config: Record<string, unknown>, seed: number, d = 8, F = 16) {
  const rand = seededRandom(seed);
  const normal = () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
  const arch = createArchitecture(name, config);
  const shapes = arch.paramShapes({ activationDim: d, dictSize: F });
  const params: Record<string, { shape: number[]; values: Float32Array }> = {};
  for (const [k, shape] of Object.entries(shapes)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      values[i] =
        k === 'threshold'
          ? 0.3
          : k === 'log_threshold'
            ? Math.log(0.05 + 0.3 * rand())
            : normal() * (k.startsWith('W') ? 0.5 : 0.3);
    }
    params[k] = { shape, values };
  }
  return {
    architecture: name,
    config: arch.config as Record<string, unknown>,
    packageName: arch.packageName,
    activationDim: d,
    dictSize: F,
    params,
    scale: 1,
    training: {},
  };
}
