// The JSON calls of src/lib/api.js with a fake fetch: paths, bodies,
// same-origin credentials, and the errors the page shows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as api from '../../src/lib/api.js';

function fakeFetch(status, body) {
  const calls = [];
  globalThis.fetch = async (path, init) => {
    calls.push({ path, init });
    if (status === 0) throw new TypeError('Failed to fetch');
    return { ok: status >= 200 && status < 300, status, statusText: 'x', text: async () => body };
  };
  return calls;
}

const SID = '3f1c2a9e-8d4b-4c1a-9e2f-0a1b2c3d4e5f';
const AID = '9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d';

test('requests', async () => {
  const cases = [
    { name: 'list', fn: () => api.listSessions(), method: 'GET', path: '/api/sessions', body: undefined },
    { name: 'create', fn: () => api.createSession(), method: 'POST', path: '/api/sessions', body: {} },
    { name: 'prompt', fn: () => api.sendPrompt(SID, 'hi'), method: 'POST', path: `/api/sessions/${SID}/prompt`, body: { text: 'hi' } },
    { name: 'cancel', fn: () => api.cancelTurn(SID), method: 'POST', path: `/api/sessions/${SID}/cancel`, body: {} },
    { name: 'approve', fn: () => api.answerApproval(SID, AID, true), method: 'POST', path: `/api/sessions/${SID}/approvals/${AID}`, body: { approve: true } },
    { name: 'deny', fn: () => api.answerApproval(SID, AID, false), method: 'POST', path: `/api/sessions/${SID}/approvals/${AID}`, body: { approve: false } },
    { name: 'vm', fn: () => api.vmInfo(), method: 'GET', path: '/api/vm', body: undefined },
    { name: 'verb', fn: () => api.runVerb('reset', SID), method: 'POST', path: '/api/vm/reset', body: { session_id: SID } },
    { name: 'verb-no-session', fn: () => api.runVerb('status'), method: 'POST', path: '/api/vm/status', body: {} },
    { name: 'verb-args', fn: () => api.runVerb('guest-exec', SID, undefined, ['systemctl', 'restart', 'ssh']), method: 'POST', path: '/api/vm/guest-exec', body: { session_id: SID, args: ['systemctl', 'restart', 'ssh'] } },
    { name: 'verb-presence', fn: () => api.runVerb('reset', SID, { challenge_id: 'c' }), method: 'POST', path: '/api/vm/reset', body: { session_id: SID, presence: { challenge_id: 'c' } } },
    { name: 'health', fn: () => api.vmHealth(), method: 'GET', path: '/api/vm/health', body: undefined },
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

test('path-segments-escaped', async () => {
  const calls = fakeFetch(200, '{}');
  await api.runVerb('../sessions');
  assert.equal(calls[0].path, '/api/vm/..%2Fsessions', 'a hostile verb stays one path segment');
});

test('errors', async () => {
  const cases = [
    { name: 'json-error', status: 409, body: '{"error":"a turn is already running in this session","code":"turn_running"}', want: '409: a turn is already running in this session', code: 'turn_running' },
    { name: 'text-error', status: 502, body: 'bad gateway', want: '502: bad gateway', code: 'error' },
    { name: 'signed-out', status: 401, body: '{"error":"not authenticated","code":"unauthorized"}', want: 'not signed in: sign in with your passkey, or reload the page', code: 'unauthorized' },
    { name: 'network', status: 0, body: '', want: 'no answer from the server (network down?)', code: 'network' },
  ];
  for (const c of cases) {
    fakeFetch(c.status, c.body);
    await assert.rejects(api.listSessions(), (e) => {
      assert.ok(e instanceof api.ApiError, c.name);
      assert.equal(e.status, c.status, c.name);
      assert.equal(e.message, c.want, c.name);
      assert.equal(e.code, c.code, c.name);
      return true;
    });
  }
});
