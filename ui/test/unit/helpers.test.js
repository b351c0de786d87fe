import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capText, footer, formatCost, formatDuration, retryLine, segments, shortTime } from '../../src/lib/format.js';
import { VERBS, expectedAfter, parseStatus, settled, verbList, SETTLE_TRIES } from '../../src/lib/vm.js';
import { CLOSED, CONNECTING, OPEN, STALE_HIDDEN_MS, backoffMs, connState, isStale, parseEvent } from '../../src/lib/stream.js';
import { PRESETS } from '../../src/lib/presets.js';

test('formatDuration', () => {
  for (const [ms, want] of [[0, '0 ms'], [850, '850 ms'], [1234, '1.2 s'], [59_949, '59.9 s'], [245_000, '4 min 05 s'], [-1, ''], [null, ''], [NaN, '']]) {
    assert.equal(formatDuration(ms), want, String(ms));
  }
});

test('formatCost', () => {
  for (const [usd, want] of [[0, '$0'], [0.0123, '$0.01'], [0.00456, '$0.0046'], [1.5, '$1.50'], [-1, ''], [undefined, '']]) {
    assert.equal(formatCost(usd), want, String(usd));
  }
});

test('capText', () => {
  assert.deepEqual(capText('abc', 5), { text: 'abc', cut: 0 });
  assert.deepEqual(capText('abcdefgh', 5), { text: 'abcde', cut: 3 });
  assert.deepEqual(capText(undefined, 5), { text: '', cut: 0 });
});

test('segments', () => {
  const cases = [
    { name: 'plain', in: 'hello\nworld', want: [{ code: false, text: 'hello\nworld' }] },
    { name: 'fence', in: 'Run:\n```sh\nfree -m\n```\nthen read.', want: [
      { code: false, text: 'Run:' }, { code: true, text: 'free -m' }, { code: false, text: 'then read.' }] },
    { name: 'unclosed-fence', in: 'x\n```\nstill streaming', want: [
      { code: false, text: 'x' }, { code: true, text: 'still streaming' }] },
    { name: 'html-is-text', in: '<img src=x onerror=alert(1)>', want: [{ code: false, text: '<img src=x onerror=alert(1)>' }] },
    { name: 'empty', in: '', want: [] },
  ];
  for (const c of cases) assert.deepEqual(segments(c.in), c.want, c.name);
});

test('shortTime', () => {
  const now = new Date(2026, 10, 27, 12, 0);
  assert.equal(shortTime(new Date(2026, 10, 27, 3, 7).toISOString(), now), '03:07');
  assert.equal(shortTime(new Date(2026, 10, 26, 23, 59).toISOString(), now), '2026-11-26 23:59');
  assert.equal(shortTime('nonsense', now), '');
});

test('verbs-table', () => {
  assert.deepEqual(VERBS.map((v) => v.name), ['status', 'forensics', 'screenshot', 'console', 'guest', 'tasks', 'reset', 'stop', 'start', 'cycle', 'unlock', 'guest-exec']);
  assert.deepEqual(VERBS.filter((v) => v.mutating).map((v) => v.name), ['reset', 'stop', 'start', 'cycle', 'unlock', 'guest-exec']);
  for (const v of VERBS) assert.equal(v.group, v.mutating ? 'act' : 'look', `${v.name}: look reads, act changes`);
  assert.deepEqual(VERBS.filter((v) => v.takesArgs).map((v) => v.name), ['guest-exec']);
  for (const v of VERBS) assert.ok(v.what.length > 10, `${v.name} says what it does`);
});

test('verbList', () => {
  assert.deepEqual(verbList(null), VERBS.slice(), 'falls back to the fixed table');
  assert.deepEqual(verbList({ verbs: [] }), VERBS.slice());
  const got = verbList({ vmid: 102, verbs: [{ name: 'status', mutating: false }, { name: 'reset' }, { name: 'odd', mutating: false }, { nope: 1 }] });
  assert.deepEqual(got.map((v) => [v.name, v.mutating]), [['status', false], ['reset', true], ['odd', false]]);
  assert.equal(got[1].label, 'Reset');
});

test('parseStatus', () => {
  const cases = [
    ['running', 'cpus: 4\nstatus: running\nqmpstatus: running\n'],
    ['paused', 'status: running\nqmpstatus: paused\n'],
    ['stopped', 'status: stopped\n'],
    ['unknown', ''],
    ['unknown', 'garbage'],
    ['unknown', undefined],
  ];
  for (const [want, out] of cases) assert.equal(parseStatus(out), want, JSON.stringify(out));
});

test('settle', () => {
  assert.equal(expectedAfter('reset'), 'running');
  assert.equal(expectedAfter('cycle'), 'running');
  assert.equal(expectedAfter('start'), 'running');
  assert.equal(expectedAfter('stop'), 'stopped');
  assert.equal(expectedAfter('status'), null);
  assert.equal(settled('stop', 'running', 1), false);
  assert.equal(settled('stop', 'stopped', 1), true);
  assert.equal(settled('stop', 'running', SETTLE_TRIES), true, 'gives up after the last try');
  assert.equal(settled('forensics', 'unknown', 1), true);
});

test('isStale', () => {
  assert.equal(isStale({ readyState: OPEN, hiddenMs: 0 }), false);
  assert.equal(isStale({ readyState: OPEN, hiddenMs: STALE_HIDDEN_MS - 1 }), false);
  assert.equal(isStale({ readyState: OPEN, hiddenMs: STALE_HIDDEN_MS }), true, 'hidden long: the connection may be dead');
  assert.equal(isStale({ readyState: CLOSED }), true);
  assert.equal(isStale({ readyState: CONNECTING, hiddenMs: 0 }), false, 'the browser is already reconnecting');
  assert.equal(isStale({ readyState: OPEN, restored: true }), true, 'back-forward cache');
});

test('connState', () => {
  assert.equal(connState({ online: true, readyState: OPEN }), 'live');
  assert.equal(connState({ online: true, readyState: CONNECTING }), 'reconnecting');
  assert.equal(connState({ online: true, readyState: CLOSED }), 'reconnecting');
  assert.equal(connState({ online: false, readyState: OPEN }), 'offline');
});

test('backoffMs', () => {
  assert.deepEqual([0, 1, 2, 3, 4, 5, 9].map(backoffMs), [1000, 2000, 4000, 8000, 16000, 30000, 30000]);
});

test('parseEvent', () => {
  assert.deepEqual(parseEvent('3', 'text', '{"delta":"hi"}'), { id: 3, type: 'text', data: { delta: 'hi' } });
  assert.deepEqual(parseEvent('3', 'text', '{"id":3,"event":"text","data":{"delta":"hi"}}'), { id: 3, type: 'text', data: { delta: 'hi' } }, 'a whole log entry is unwrapped');
  assert.equal(parseEvent('', 'text', '{}'), null, 'no id');
  assert.equal(parseEvent('x', 'text', '{}'), null);
  assert.equal(parseEvent('3', 'text', 'not json'), null);
});

test('presets', () => {
  assert.deepEqual(PRESETS.map((p) => p.label), ['Triage', 'Memory/OOM', 'Disk', 'Services', 'QEMU wedged']);
  for (const p of PRESETS) assert.ok(p.text.length > 80, `${p.label} is a real prompt`);
});

test('footer', () => {
  const cases = [
    { name: 'success', m: { isError: false, durationMs: 4200, costUsd: 0.0123, numTurns: 2 }, want: 'Done · 4.2 s · $0.01 · 2 steps' },
    { name: 'one-step', m: { isError: false, durationMs: 800, costUsd: null, numTurns: 1 }, want: 'Done · 800 ms · 1 step' },
    { name: 'failed', m: { isError: true, subtype: 'error_max_turns', durationMs: null, costUsd: 0, numTurns: null }, want: 'Failed (error_max_turns) · $0' },
    { name: 'stopped', m: { isError: true, subtype: 'error_during_execution', interrupted: 'cancelled', durationMs: 808, costUsd: 0.0001, numTurns: 2 }, want: 'Stopped · 808 ms · $0.0001 · 2 steps' },
    { name: 'timed-out', m: { isError: true, interrupted: 'timeout', durationMs: null, costUsd: null, numTurns: null }, want: 'Timed out' },
  ];
  for (const c of cases) assert.equal(footer(c.m), c.want, c.name);
});

test('retryLine', () => {
  assert.equal(retryLine({ attempt: 2, maxRetries: 10, retryInMs: 1500, error: 'overloaded' }), 'API retry 2/10 in 1.5 s: overloaded');
  assert.equal(retryLine({ attempt: null, maxRetries: null, retryInMs: null, error: '' }), 'API retry');
});
