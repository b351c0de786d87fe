// Reports the gzipped size of the JS and CSS the first page load fetches
// (what index.html references, and what those modules import statically),
// and fails over the budget. Run after a build: node scripts/size.mjs
import { readFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const BUDGET_GZIP_BYTES = 60 * 1024;

const dist = fileURLToPath(new URL('../dist/', import.meta.url));
const html = readFileSync(join(dist, 'index.html'), 'utf8');

const seen = new Set();
const queue = [...html.matchAll(/(?:src|href)="\/?(assets\/[^"]+\.(?:js|css))"/g)].map((m) => m[1]);
while (queue.length > 0) {
  const f = queue.shift();
  if (seen.has(f)) continue;
  seen.add(f);
  if (f.endsWith('.js')) {
    const src = readFileSync(join(dist, f), 'utf8');
    // static imports between chunks: import … from "./x.js" / import "./x.js"
    for (const m of src.matchAll(/(?:^|[;\s])import\s*(?:[^'"();]*?from\s*)?["']\.\/([^"']+)["']/g)) queue.push(`assets/${m[1]}`);
  }
}

let raw = 0;
let gz = 0;
const rows = [];
for (const f of [...seen].sort()) {
  const b = readFileSync(join(dist, f));
  const g = gzipSync(b, { level: 9 }).length;
  raw += b.length;
  gz += g;
  rows.push(`  ${f}  ${b.length} B raw, ${g} B gzip`);
}
console.log(`first load JS+CSS: ${(gz / 1024).toFixed(1)} KiB gzip (${(raw / 1024).toFixed(1)} KiB raw), budget ${BUDGET_GZIP_BYTES / 1024} KiB`);
console.log(rows.join('\n'));
if (gz > BUDGET_GZIP_BYTES) {
  console.error(`over budget by ${gz - BUDGET_GZIP_BYTES} B`);
  process.exit(1);
}
