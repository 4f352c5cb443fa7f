#!/usr/bin/env node
// Copies each example file into the guides that show it: the ```ts block after a line
// `<!-- example: examples/src/NAME.ts -->` in apps/docs/guides/*.md becomes the file's text.
// Run after editing an example: node examples/sync-guides.mjs (src/guides.test.ts checks it).
import { readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const guides = join(root, 'apps/docs/guides');
for (const name of readdirSync(guides).filter((f) => f.endsWith('.md'))) {
  const path = join(guides, name);
  const text = readFileSync(path, 'utf8');
  const synced = text.replace(
    /(<!-- example: (\S+) -->\n```(?:ts|typescript)\n)[\s\S]*?```/g,
    (_, head, file) => `${head}${readFileSync(join(root, file), 'utf8')}\`\`\``,
  );
  if (synced !== text) {
    // temp + rename, so an interrupted run never leaves half a guide
    writeFileSync(`${path}.tmp`, synced);
    renameSync(`${path}.tmp`, path);
    console.log(`synced ${name}`);
  }
}
