// The sessions sheet's network calls and helpers: search, rename, archive,
// restore, export, and handing the export to the share sheet or a download.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as api from '../../src/lib/api.js';
import { deliver, titleProblem } from '../../src/lib/share.js';

const SID = '3f1c2a9e-8d4b-4c1a-9e2f-0a1b2c3d4e5f';

function fakeFetch(status, body, headers = {}) {
  const calls = [];
  globalThis.fetch = async (path, init) => {
    calls.push({ path, init });
    return {
      ok: status >= 200 && status < 300,
      status,
      statusText: 'x',
      text: async () => body,
      blob: async () => new Blob([body], { type: headers['Content-Type'] ?? '' }),
      headers: { get: (k) => headers[k] ?? null },
    };
  };
  return calls;
}

test('management-requests', async () => {
  const cases = [
    { name: 'list', fn: () => api.listSessions(), method: 'GET', path: '/api/sessions', body: undefined },
    { name: 'search', fn: () => api.listSessions({ q: 'disk & (.*) é' }), method: 'GET', path: '/api/sessions?q=disk+%26+%28.*%29+%C3%A9', body: undefined },
    { name: 'archived', fn: () => api.listSessions({ archived: true }), method: 'GET', path: '/api/sessions?archived=1', body: undefined },
    { name: 'search-archived', fn: () => api.listSessions({ q: 'oom', archived: true }), method: 'GET', path: '/api/sessions?q=oom&archived=1', body: undefined },
    { name: 'rename', fn: () => api.renameSession(SID, 'Disk full'), method: 'PATCH', path: `/api/sessions/${SID}`, body: { title: 'Disk full' } },
    { name: 'archive', fn: () => api.archiveSession(SID), method: 'DELETE', path: `/api/sessions/${SID}`, body: undefined },
    { name: 'restore', fn: () => api.restoreSession(SID), method: 'POST', path: `/api/sessions/${SID}/restore`, body: {} },
  ];
  for (const c of cases) {
    const calls = fakeFetch(200, '{"ok":true}');
    assert.deepEqual(await c.fn(), { ok: true }, c.name);
    assert.equal(calls[0].path, c.path, c.name);
    assert.equal(calls[0].init.method, c.method, c.name);
    assert.equal(calls[0].init.credentials, 'same-origin', c.name);
    assert.deepEqual(calls[0].init.body === undefined ? undefined : JSON.parse(calls[0].init.body), c.body, c.name);
  }
});

test('export-fetch', async () => {
  assert.equal(api.exportPath(SID, 'json'), `/api/sessions/${SID}/export?format=json`);
  assert.equal(api.exportPath(SID, 'html'), `/api/sessions/${SID}/export?format=md`, 'anything else is Markdown');
  fakeFetch(200, '# Incident record', { 'Content-Disposition': 'attachment; filename="breakglass-20260101-3f1c2a9e.md"', 'Content-Type': 'text/markdown' });
  const file = await api.fetchExport(SID, 'md');
  assert.equal(file.name, 'breakglass-20260101-3f1c2a9e.md');
  assert.equal(await file.text(), '# Incident record');
  fakeFetch(404, '{"error":"session not found","code":"session_not_found"}');
  await assert.rejects(api.fetchExport(SID, 'md'), (e) => e.status === 404 && e.code === 'session_not_found' && e.message === '404: session not found');
});

function fakeDoc() {
  const clicked = [];
  return {
    clicked,
    body: { appendChild() {} },
    createElement: () => ({ click() { clicked.push({ href: this.href, download: this.download }); }, remove() {} }),
  };
}
const fakeURL = { createObjectURL: () => 'blob:x', revokeObjectURL() {} };

test('deliver', async () => {
  const file = new File(['x'], 'breakglass-1.md', { type: 'text/markdown' });
  const cases = [
    { name: 'phone-shares', nav: { canShare: () => true, share: async () => {} }, want: 'shared', download: false },
    { name: 'share-cancelled', nav: { canShare: () => true, share: async () => { throw Object.assign(new Error('x'), { name: 'AbortError' }); } }, want: 'cancelled', download: false },
    { name: 'share-refused', nav: { canShare: () => true, share: async () => { throw Object.assign(new Error('x'), { name: 'NotAllowedError' }); } }, want: 'downloaded', download: true },
    { name: 'no-file-sharing', nav: { canShare: () => false, share: async () => assert.fail('must not share') }, want: 'downloaded', download: true },
    { name: 'desktop', nav: {}, want: 'downloaded', download: true },
  ];
  for (const c of cases) {
    const doc = fakeDoc();
    assert.equal(await deliver(file, { nav: c.nav, doc, url: fakeURL }), c.want, c.name);
    assert.deepEqual(doc.clicked, c.download ? [{ href: 'blob:x', download: 'breakglass-1.md' }] : [], c.name);
  }
});

test('title-problem', () => {
  const cases = [
    { name: 'ok', title: ' Disk full ', want: '' },
    { name: 'empty', title: '', want: 'A title cannot be empty.' },
    { name: 'blank', title: ' \t', want: 'A title cannot be empty.' },
    { name: '10k', title: 'x'.repeat(10240), want: 'A title has at most 200 characters.' },
    { name: '200-emoji', title: '🔥'.repeat(200), want: '' },
    { name: 'newline', title: 'a\nb', want: 'A title cannot hold control characters.' },
    { name: 'escape', title: 'a\u001b[2J', want: 'A title cannot hold control characters.' },
    { name: 'not-a-string', title: null, want: 'A title cannot be empty.' },
  ];
  for (const c of cases) assert.equal(titleProblem(c.title), c.want, c.name);
});
