import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('.', import.meta.url));

/**
 * Maps every `@dictlearn/<pkg>[/<entry>]` export to its TypeScript source, so tests and the
 * playground's dev build run against the sources without building the packages first. Read from
 * each package's `exports` map and `tsup.config.ts` entry names (`dist/x.js` ← `src/x.ts`).
 */
export function workspaceAliases(): { find: RegExp; replacement: string }[] {
  const out: { find: RegExp; replacement: string }[] = [];
  for (const dir of readdirSync(`${root}packages`)) {
    // A folder without a manifest (a package being set up, a stray build output) is no package.
    if (!existsSync(`${root}packages/${dir}/package.json`)) continue;
    const pkg = JSON.parse(readFileSync(`${root}packages/${dir}/package.json`, 'utf8')) as {
      name: string;
      exports: Record<string, { import?: string } | string>;
    };
    for (const [sub, target] of Object.entries(pkg.exports)) {
      if (typeof target === 'string' || !target.import) continue;
      const src = target.import.replace(/^\.\/dist\//, 'src/').replace(/\.js$/, '.ts');
      const name = sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`;
      out.push({
        find: new RegExp(`^${name.replace(/[/.]/g, '\\$&')}$`),
        replacement: `${root}packages/${dir}/${src}`,
      });
    }
  }
  return out;
}
