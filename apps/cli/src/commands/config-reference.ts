import {
  type ConfigField,
  RUN_FIELDS,
  SOURCE_OPTIONS,
  type SourceOption,
  TRAINER_FIELDS,
} from './train-config.js';

/** Where the generated reference is checked in, relative to the repository root. */
export const CONFIG_REFERENCE_PATH = 'apps/docs/guides/config-reference.md';

const cell = (s: string | undefined) => (s === undefined ? '–' : s.replace(/\|/g, '\\|'));
const code = (s: string | undefined) => (s === undefined ? '–' : `\`${s}\``);

function fieldTable(fields: readonly ConfigField[]): string[] {
  const rows = fields.map(
    (f) =>
      `| \`${f.key}\` | ${f.kind} | ${f.default === undefined ? '–' : cell(f.default)} | ${f.flag ? code(`--${f.flag}`) : '–'} | ${cell(f.description)} |`,
  );
  return ['| key | type | default | flag | meaning |', '| --- | --- | --- | --- | --- |', ...rows];
}

function optionTable(options: readonly SourceOption[]): string[] {
  const rows = options.map(
    (o) =>
      `| \`${o.key}\` | ${cell(o.type)} | ${o.default === undefined ? '–' : cell(o.default)} | ${o.flag ? code(`--${o.flag}`) : '–'} | ${cell(o.description)} |`,
  );
  return ['| option | type | default | flag | meaning |', '| --- | --- | --- | --- | --- |', ...rows];
}

/**
 * The reference of `dictlearn train --config FILE`, generated from the field tables that
 * validation reads ({@link RUN_FIELDS}, {@link TRAINER_FIELDS}, {@link SOURCE_OPTIONS}), so the two
 * cannot drift: `config-reference.test.ts` fails when the checked-in page differs.
 */
export function configReference(): string {
  const lines = [
    '---',
    'title: Config file reference',
    '---',
    '',
    '# Config file reference',
    '',
    '<!-- Generated from apps/cli/src/commands/train-config.ts; do not edit. Regenerate with:',
    '     DICTLEARN_WRITE_REFERENCE=1 pnpm vitest run apps/cli/src/commands/config-reference.test.ts -->',
    '',
    '`dictlearn train --config FILE` reads a run from a YAML or JSON file (by extension; flags given',
    'beside it override the file). Unknown keys are refused at every level, naming the key and the',
    'nearest known one; so are values of the wrong type. A minimal file:',
    '',
    '```yaml',
    'source: { type: npy, files: [acts/] }',
    'trainers:',
    '  - { architecture: standard, config: { l1Penalty: 0.1 }, lr: 1e-2, resampleSteps: 200 }',
    '  - { architecture: topk, config: { k: 32 } }',
    'steps: 2000',
    'out: runs/sweep',
    '```',
    '',
    'A longer one, every architecture on one synthetic stream: `apps/cli/examples/archs-demo.yaml`.',
    '',
    '## Run',
    '',
    ...fieldTable(RUN_FIELDS),
    '',
    '## Trainer (`trainers[i]`)',
    '',
    ...fieldTable(TRAINER_FIELDS),
    '',
    "Each architecture's own keys (`config`) are listed in its package's README.",
    '',
    '## Sources (`source`)',
    '',
    '`source: { type: NAME, ...options }`; `source: NAME` alone is `{ type: NAME }` (so `source: npy`',
    'without `files` is refused, naming the missing option). Each source refuses options it does not',
    'know.',
  ];
  for (const [type, options] of Object.entries(SOURCE_OPTIONS)) {
    lines.push('', `### \`${type}\``, '', ...optionTable(options));
  }
  lines.push('');
  return lines.join('\n');
}
