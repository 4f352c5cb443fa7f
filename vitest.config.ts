import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (p: string) => fileURLToPath(new URL(p, import.meta.url));

// Tests run against the TypeScript sources, so no build is needed first.
export default defineConfig({
  resolve: {
    alias: [
      { find: /^@dictlearn\/core\/testing$/, replacement: here('packages/core/src/testing/index.ts') },
      { find: /^@dictlearn\/core$/, replacement: here('packages/core/src/index.ts') },
      {
        find: /^@dictlearn\/arch-standard\/register$/,
        replacement: here('packages/arch-standard/src/register.ts'),
      },
      { find: /^@dictlearn\/arch-standard$/, replacement: here('packages/arch-standard/src/index.ts') },
      {
        find: /^@dictlearn\/backend-webgpu\/register$/,
        replacement: here('packages/backend-webgpu/src/register.ts'),
      },
      { find: /^@dictlearn\/backend-webgpu$/, replacement: here('packages/backend-webgpu/src/index.ts') },
      {
        find: /^@dictlearn\/backend-cpu\/register$/,
        replacement: here('packages/backend-cpu/src/register.ts'),
      },
      { find: /^@dictlearn\/backend-cpu$/, replacement: here('packages/backend-cpu/src/index.ts') },
      { find: /^@dictlearn\/buffer\/register$/, replacement: here('packages/buffer/src/register.ts') },
      { find: /^@dictlearn\/buffer$/, replacement: here('packages/buffer/src/index.ts') },
      { find: /^@dictlearn\/eval$/, replacement: here('packages/eval/src/index.ts') },
    ],
  },
  test: {
    include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts'],
    testTimeout: 60_000,
    pool: 'forks',
    reporters: ['default', './scripts/summary-reporter.ts'],
  },
});
