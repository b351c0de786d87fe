// Properties of the page's source that block an attack, one test each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const src = fileURLToPath(new URL('../../src/', import.meta.url));

function sources(dir) {
  return readdirSync(dir).flatMap((n) => {
    const p = join(dir, n);
    return statSync(p).isDirectory() ? sources(p) : [p];
  });
}

test('no-raw-html-injection', () => {
  // Model output, tool output and prompts are attacker-influenced (a log on
  // the devvm can say anything): nothing may reach the DOM as HTML.
  for (const f of sources(src)) {
    const text = readFileSync(f, 'utf8');
    for (const bad of ['{@html', 'innerHTML', 'outerHTML', 'insertAdjacentHTML', 'document.write']) {
      assert.ok(!text.includes(bad), `${f} uses ${bad}`);
    }
  }
});

test('no-token-in-page', () => {
  // Identity comes from the edge proxy; a token in the page could leak to
  // anything that reads the DOM or storage.
  for (const f of sources(src)) {
    const text = readFileSync(f, 'utf8');
    for (const bad of ['Authorization', 'localStorage', 'sessionStorage', 'Bearer']) {
      assert.ok(!text.includes(bad), `${f} mentions ${bad}`);
    }
  }
});

test('same-origin-requests-only', () => {
  // Every request goes to a path on this origin, with same-origin credentials.
  const api = readFileSync(join(src, 'lib/api.js'), 'utf8');
  assert.ok(!/https?:\/\//.test(api), 'no absolute URL in the network module');
  assert.match(api, /credentials: 'same-origin'/);
  for (const f of sources(src)) {
    if (f.endsWith('api.js')) continue;
    const text = readFileSync(f, 'utf8');
    assert.ok(!/\bfetch\(|new EventSource\(|XMLHttpRequest|WebSocket/.test(text), `${f}: network code belongs in lib/api.js`);
  }
});
