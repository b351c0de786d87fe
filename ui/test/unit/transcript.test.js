import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EVENT_TYPES, apply, empty, fold } from '../../src/lib/transcript.js';

// A whole turn as the server logs it: every event type once or more.
function turn() {
  let id = 0;
  const ev = (type, data) => ({ id: ++id, type, data });
  return [
    ev('user', { text: 'why is the devvm down?', actor: 'alice' }),
    ev('session', { session_id: 's1', model: 'sonnet', tools: ['Bash', 'Read'] }),
    ev('status', { state: 'requesting' }),
    ev('text', { delta: 'Let me ' }),
    ev('text', { delta: 'check.' }),
    ev('tool', { tool_use_id: 't1', name: 'Bash', input: 'ssh devvm uptime' }),
    ev('tool_result', { tool_use_id: 't1', output: ' 03:00 up 2 days', is_error: false }),
    ev('status', { state: 'retrying', attempt: 1, max_retries: 10, retry_in_ms: 500, error: 'overloaded' }),
    ev('status', { state: 'retrying', attempt: 2, max_retries: 10, retry_in_ms: 1000, error: 'overloaded' }),
    ev('text', { delta: 'It is up.' }),
    ev('approval', { approval_id: 'a1', verb: 'reset', state: 'pending' }),
    ev('approval', { approval_id: 'a1', verb: 'reset', state: 'approved' }),
    ev('verb', { verb: 'reset', actor: 'agent', exit_code: 0, output: 'ok', duration_ms: 1200 }),
    ev('permission', { request_id: 'r1', tool: 'Bash', input: 'systemctl restart nginx', state: 'pending', cwd: '/work' }),
    ev('user', { text: 'also check dmesg', actor: 'alice', steer: true }),
    ev('permission', { request_id: 'r1', tool: 'Bash', state: 'denied', by: 'alice', message: 'reload instead' }),
    ev('error', { message: 'something odd' }),
    ev('result', { subtype: 'success', is_error: false, text: 'It is up.', duration_ms: 4200, num_turns: 2, total_cost_usd: 0.0123 }),
    ev('done', { exit_code: 0, outcome: 'success', duration_ms: 4300 }),
  ];
}

function shuffled(arr, seed) {
  const out = arr.slice();
  let s = seed;
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    const j = s % (i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

const strip = (t) => ({ messages: t.messages, lastId: t.lastId, running: t.running, session: t.session, status: t.status });

test('every-type', () => {
  const evs = turn();
  assert.deepEqual(
    new Set(evs.map((e) => e.type)),
    new Set(EVENT_TYPES),
    'the fixture covers the whole vocabulary',
  );
  const t = fold(evs);
  assert.deepEqual(t.messages.map((m) => m.kind), [
    'user', 'text', 'tool', 'retry', 'text', 'approval', 'verb', 'permission', 'user', 'error', 'result', 'done',
  ]);
  const [user, text1, tool, retry, text2, approval, verb, permission, steer, error, result, done] = t.messages;
  assert.equal(permission.requestId, 'r1');
  assert.equal(permission.input, 'systemctl restart nginx', 'the pending event carries the command');
  assert.equal(permission.cwd, '/work');
  assert.equal(permission.state, 'denied', 'the resolution (same id) updates the card, once');
  assert.equal(permission.by, 'alice');
  assert.equal(permission.message, 'reload instead');
  assert.equal(steer.steer, true);
  assert.equal(user.steer, false);
  assert.equal(user.text, 'why is the devvm down?');
  assert.equal(user.actor, 'alice');
  assert.equal(text1.text, 'Let me check.');
  assert.equal(tool.name, 'Bash');
  assert.equal(tool.input, 'ssh devvm uptime');
  assert.equal(tool.output, ' 03:00 up 2 days');
  assert.equal(tool.isError, false);
  assert.equal(retry.attempt, 2, 'a run of retries is one line, updated');
  assert.equal(retry.error, 'overloaded');
  assert.equal(text2.text, 'It is up.');
  assert.equal(approval.state, 'approved', 'a later approval event updates the card');
  assert.equal(approval.verb, 'reset');
  assert.equal(verb.exitCode, 0);
  assert.equal(verb.output, 'ok');
  assert.equal(error.message, 'something odd');
  assert.equal(result.durationMs, 4200);
  assert.equal(result.costUsd, 0.0123);
  assert.equal(result.numTurns, 2);
  assert.equal(done.outcome, 'success');
  assert.deepEqual(t.session, { sessionId: 's1', model: 'sonnet', tools: ['Bash', 'Read'] });
  assert.equal(t.running, false);
  assert.equal(t.lastId, evs.length);
});

test('pending-permission-expires-with-its-turn', () => {
  const t = fold([
    { id: 1, type: 'user', data: { text: 'go' } },
    { id: 2, type: 'permission', data: { request_id: 'r', tool: 'Bash', input: 'rm x', state: 'pending' } },
  ]);
  assert.equal(t.messages.at(-1).state, 'pending');
  const done = apply(t, { id: 3, type: 'done', data: { outcome: 'cancelled' } });
  assert.equal(done.messages.find((m) => m.kind === 'permission').state, 'expired');
});

test('running', () => {
  const evs = turn();
  const i = evs.findIndex((e) => e.type === 'tool');
  const t = fold(evs.slice(0, i + 1));
  assert.equal(t.running, true, 'a user event starts a turn');
  assert.equal(t.messages.at(-1).output, null, 'a tool without result has no output yet');
  assert.equal(fold(evs).running, false, 'done ends it');
});

test('replay-one-by-one-equals-fold', () => {
  const evs = turn();
  let t = empty();
  for (const ev of evs) t = apply(t, ev);
  assert.deepEqual(strip(t), strip(fold(evs)));
});

test('replay-in-batches', () => {
  const evs = turn();
  let t = empty();
  t = apply(t, evs.slice(0, 5));
  t = apply(t, evs.slice(5, 11));
  t = apply(t, evs.slice(11));
  assert.deepEqual(strip(t), strip(fold(evs)));
});

test('duplicates-dropped', () => {
  const evs = turn();
  let t = apply(empty(), evs);
  const before = t;
  t = apply(t, evs); // a reconnect that replays everything again
  assert.equal(t, before, 'nothing new: the same transcript comes back');
  t = apply(t, evs[4]);
  assert.equal(t, before);
  assert.equal(t.messages.find((m) => m.kind === 'text').text, 'Let me check.', 'text is not doubled');
});

test('duplicates-within-batch', () => {
  const evs = turn();
  const doubled = evs.flatMap((e) => [e, { ...e }]);
  assert.deepEqual(strip(apply(empty(), doubled)), strip(fold(evs)));
});

test('overlapping-reconnect', () => {
  // The first stream delivers 1..10, the resumed one 7..end.
  const evs = turn();
  let t = apply(empty(), evs.slice(0, 10));
  t = apply(t, evs.slice(6));
  assert.deepEqual(strip(t), strip(fold(evs)));
});

test('out-of-order', () => {
  const evs = turn();
  const want = strip(fold(evs));
  for (let seed = 1; seed <= 50; seed++) {
    let t = empty();
    for (const ev of shuffled(evs, seed)) t = apply(t, ev);
    assert.deepEqual(strip(t), want, `arrival order from seed ${seed}`);
  }
});

test('out-of-order-with-duplicates', () => {
  const evs = turn();
  const want = strip(fold(evs));
  let t = empty();
  for (const ev of shuffled([...evs, ...evs.slice(3, 9)], 7)) t = apply(t, ev);
  assert.deepEqual(strip(t), want);
});

test('late-event-in-batch', () => {
  const evs = turn();
  const batch = [evs[0], evs[2], evs[3], evs[1], ...evs.slice(4)];
  assert.deepEqual(strip(apply(empty(), batch)), strip(fold(evs)));
});

test('input-not-mutated', () => {
  const evs = turn();
  const t1 = apply(empty(), evs.slice(0, 4));
  const snapshot = JSON.stringify(t1);
  apply(t1, evs.slice(4));
  apply(t1, [evs[1]]);
  apply(t1, [{ id: 2, type: 'text', data: { delta: 'x' } }]);
  assert.equal(JSON.stringify(t1), snapshot);
});

test('invalid-events-dropped', () => {
  const cases = [
    { desc: 'no id', ev: { type: 'text', data: { delta: 'x' } } },
    { desc: 'zero id', ev: { id: 0, type: 'text', data: { delta: 'x' } } },
    { desc: 'negative id', ev: { id: -3, type: 'text', data: { delta: 'x' } } },
    { desc: 'string id', ev: { id: '4', type: 'text', data: { delta: 'x' } } },
    { desc: 'fraction id', ev: { id: 1.5, type: 'text', data: { delta: 'x' } } },
    { desc: 'no type', ev: { id: 1, data: { delta: 'x' } } },
    { desc: 'null', ev: null },
  ];
  for (const c of cases) {
    const t = apply(empty(), c.ev);
    assert.equal(t.messages.length, 0, c.desc);
    assert.equal(t.lastId, 0, c.desc);
  }
});

test('unknown-type-ignored', () => {
  const t = apply(empty(), [
    { id: 1, type: 'user', data: { text: 'hi' } },
    { id: 2, type: 'telemetry', data: { x: 1 } },
    { id: 3, type: 'text', data: { delta: 'a' } },
  ]);
  assert.deepEqual(t.messages.map((m) => m.kind), ['user', 'text']);
  assert.equal(t.lastId, 3);
  assert.equal(apply(t, { id: 2, type: 'telemetry', data: {} }), t, 'its id counts as seen');
});

test('hostile-data-stays-text', () => {
  const xss = '<img src=x onerror=alert(1)>';
  const t = fold([
    { id: 1, type: 'user', data: { text: xss, actor: '<b>x</b>' } },
    { id: 2, type: 'text', data: { delta: xss } },
    { id: 3, type: 'tool', data: { tool_use_id: 't', name: 'Bash', input: xss } },
    { id: 4, type: 'text', data: null },
    { id: 5, type: 'tool_result', data: { tool_use_id: 't', output: 42, is_error: 'yes' } },
    { id: 6, type: 'result', data: { duration_ms: 'slow', total_cost_usd: NaN } },
  ]);
  assert.equal(t.messages[0].text, xss, 'kept verbatim as a string; rendering escapes it');
  assert.equal(t.messages[1].text, xss);
  assert.equal(t.messages[2].output, '', 'non-string output becomes empty text');
  assert.equal(t.messages[2].isError, false, 'only true is true');
  assert.equal(t.messages[3].durationMs, null);
  assert.equal(t.messages[3].costUsd, null);
});

test('text-split-by-tool', () => {
  const t = fold([
    { id: 1, type: 'text', data: { delta: 'a' } },
    { id: 2, type: 'tool', data: { tool_use_id: 't', name: 'Bash', input: 'ls' } },
    { id: 3, type: 'text', data: { delta: 'b' } },
    { id: 4, type: 'text', data: { delta: 'c' } },
  ]);
  assert.deepEqual(t.messages.map((m) => m.text ?? m.kind), ['a', 'tool', 'bc']);
});

test('tool-result-without-call', () => {
  const t = fold([{ id: 1, type: 'tool_result', data: { tool_use_id: 'x', output: 'orphan', is_error: true } }]);
  assert.equal(t.messages.length, 1);
  assert.equal(t.messages[0].kind, 'tool');
  assert.equal(t.messages[0].output, 'orphan');
  assert.equal(t.messages[0].isError, true);
});

test('pending-approval-expires-with-turn', () => {
  const t = fold([
    { id: 1, type: 'user', data: { text: 'fix it' } },
    { id: 2, type: 'approval', data: { approval_id: 'a', verb: 'cycle', state: 'pending' } },
    { id: 3, type: 'done', data: { exit_code: 1, outcome: 'cancelled', duration_ms: 10 } },
  ]);
  assert.equal(t.messages[1].state, 'expired');
  assert.equal(t.messages[2].outcome, 'cancelled');
});

test('keys-stable-while-streaming', () => {
  let t = apply(empty(), { id: 1, type: 'text', data: { delta: 'a' } });
  const key = t.messages[0].key;
  t = apply(t, { id: 2, type: 'text', data: { delta: 'b' } });
  assert.equal(t.messages[0].key, key, 'a growing message keeps its key');
  assert.equal(t.messages[0].text, 'ab');
});

test('two-turns', () => {
  const first = turn();
  const second = turn().map((e) => ({ ...e, id: e.id + first.length }));
  const t = fold([...first, ...second]);
  assert.equal(t.messages.filter((m) => m.kind === 'user' && !m.steer).length, 2);
  assert.equal(t.messages.filter((m) => m.kind === 'result').length, 2);
  assert.equal(t.lastId, first.length * 2);
});

test('long-replay', () => {
  const evs = [{ id: 1, type: 'user', data: { text: 'go' } }];
  for (let i = 2; i <= 10_000; i++) evs.push({ id: i, type: 'text', data: { delta: 'x' } });
  let t = empty();
  for (let i = 0; i < evs.length; i += 500) t = apply(t, evs.slice(i, i + 500));
  assert.equal(t.messages[1].text.length, 9_999);
  assert.equal(t.lastId, 10_000);
});

test('interrupted-result', () => {
  const t = fold([
    { id: 1, type: 'user', data: { text: 'go' } },
    { id: 2, type: 'result', data: { subtype: 'error_during_execution', is_error: true, duration_ms: 800 } },
    { id: 3, type: 'done', data: { exit_code: 0, outcome: 'cancelled', duration_ms: 900 } },
  ]);
  assert.equal(t.messages[1].interrupted, 'cancelled', 'the error result is the stop, not a failure');
  const ok = fold([
    { id: 1, type: 'user', data: { text: 'go' } },
    { id: 2, type: 'result', data: { subtype: 'success', is_error: false } },
    { id: 3, type: 'done', data: { exit_code: 0, outcome: 'success' } },
    { id: 4, type: 'user', data: { text: 'again' } },
    { id: 5, type: 'done', data: { exit_code: 0, outcome: 'cancelled' } },
  ]);
  assert.equal(ok.messages[1].interrupted, undefined, "an earlier turn's result is left alone");
});
