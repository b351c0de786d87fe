// Fails when the committed ui/dist is not what ui/src builds to: rebuilds
// into a temporary folder and compares every file byte for byte. The Go
// binary embeds dist, so a stale dist would ship an old page.
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'vite';

const root = fileURLToPath(new URL('..', import.meta.url));
const dist = join(root, 'dist');

function files(dir) {
  const out = [];
  const walk = (d) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out.push(relative(dir, p));
    }
  };
  walk(dir);
  return out;
}

// Svelte's scoped class names hash file paths relative to the working
// directory: build from ui/ as `npm run build` does.
process.chdir(root);

const tmp = mkdtempSync(join(tmpdir(), 'breakglass-ui-'));
try {
  await build({ root, logLevel: 'error', build: { outDir: tmp, emptyOutDir: true } });
  let committed = [];
  try {
    committed = files(dist);
  } catch {
    // no dist at all: reported below as every file missing
  }
  const fresh = files(tmp);
  const problems = [];
  for (const f of fresh) {
    if (!committed.includes(f)) problems.push(`missing from dist: ${f}`);
    else if (!readFileSync(join(tmp, f)).equals(readFileSync(join(dist, f)))) problems.push(`differs: ${f}`);
  }
  for (const f of committed) if (!fresh.includes(f)) problems.push(`extra in dist: ${f}`);
  if (problems.length > 0) {
    console.error(`ui/dist is stale against ui/src (run: make ui, then commit ui/dist):\n  ${problems.join('\n  ')}`);
    process.exit(1);
  }
  console.log(`ui/dist is up to date (${fresh.length} files)`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
