/// <reference types="@vitest/browser/providers/playwright" />
import { existsSync } from 'node:fs';
import { defineConfig } from 'vitest/config';
import { CHROMIUM_ARGS, CHROMIUM_PATH } from './scripts/chromium.js';
import { workspaceAliases } from './workspace-aliases.js';

const hasChromium = existsSync(CHROMIUM_PATH);

// Tests run against the TypeScript sources, so no build is needed first.
export default defineConfig({
  resolve: { alias: workspaceAliases() },
  test: {
    testTimeout: 60_000,
    reporters: ['default', './scripts/summary-reporter.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'node',
          include: ['packages/*/src/**/*.test.ts', 'apps/*/src/**/*.test.ts', 'examples/src/**/*.test.ts'],
          exclude: ['**/*.browser.test.ts', '**/node_modules/**'],
          pool: 'forks',
          env: { DICTLEARN_CHROMIUM_FOUND: hasChromium ? '1' : '' },
        },
      },
      // Browser tests (WebGPU through Chromium's SwiftShader), where Chromium is installed; the
      // node project reports them skipped, with the reason, where it is not.
      ...(hasChromium
        ? [
            {
              extends: true as const,
              test: {
                name: 'chromium',
                include: ['packages/*/src/**/*.browser.test.ts'],
                browser: {
                  enabled: true,
                  provider: 'playwright' as const,
                  headless: true,
                  screenshotFailures: false,
                  instances: [
                    {
                      browser: 'chromium' as const,
                      launch: { executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS },
                    },
                  ],
                },
              },
            },
          ]
        : []),
    ],
  },
});
