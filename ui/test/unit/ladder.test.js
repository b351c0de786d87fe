import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VERBS, checkArgv, grouped, ladder, verbList } from '../../src/lib/vm.js';
import { apply, empty } from '../../src/lib/transcript.js';

const up = {
  pve: { ok: true, ms: 42, error: '' },
  vm: { state: 'running', lock: '' },
  guest_agent: { ok: true, error: '' },
  ssh: { ok: true, error: '' },
  checked_at: '2026-12-02T06:00:00Z',
};

test('ladder-all-up', () => {
  const l = ladder(up);
  assert.deepEqual(l.rungs.map((r) => [r.key, r.ok]), [['pve', true], ['vm', true], ['guest_agent', true], ['ssh', true]]);
  assert.equal(l.first, '');
  assert.equal(l.advice, '');
  assert.equal(l.rungs[0].detail, 'answers in 42 ms');
});

test('ladder-first-broken-rung', () => {
  const cases = [
    [{ ...up, pve: { ok: false, error: 'the Proxmox host is unreachable' }, vm: { state: 'unknown' }, guest_agent: { ok: false }, ssh: { ok: true } }, 'pve', /no VM control/],
    [{ ...up, vm: { state: 'stopped', lock: '' }, guest_agent: { ok: false, error: 'VM 102 is not running' }, ssh: { ok: false } }, 'vm', /Start it/],
    [{ ...up, guest_agent: { ok: false, error: 'QEMU guest agent is not running' }, ssh: { ok: false } }, 'guest_agent', /Screenshot/],
    [{ ...up, ssh: { ok: false, error: 'ssh devvm: Connection closed' } }, 'ssh', /Run in guest/],
  ];
  for (const [h, first, advice] of cases) {
    const l = ladder(h);
    assert.equal(l.first, first);
    assert.match(l.advice, advice);
  }
  const locked = ladder({ ...up, vm: { state: 'running', lock: 'backup' } });
  assert.equal(locked.rungs[1].detail, 'running · locked (backup)');
  const lockedStopped = ladder({ ...up, vm: { state: 'stopped', lock: 'backup' } });
  assert.match(lockedStopped.advice, /Tasks/);
});

test('ladder-hostile-answers', () => {
  for (const h of [null, undefined, 'x', 42, [], { pve: 'yes', vm: 7, ssh: null }]) {
    const l = ladder(h);
    assert.equal(l.rungs.length, 4);
    assert.equal(l.first, 'pve', 'nothing readable is not up');
  }
  const html = ladder({ ...up, ssh: { ok: false, error: '<img src=x onerror=alert(1)>' } });
  assert.equal(html.rungs[3].detail, '<img src=x onerror=alert(1)>', 'text, rendered as text by Svelte');
});

test('grouped-look-act', () => {
  const g = grouped(verbList(null));
  assert.deepEqual(g.map((x) => x.name), ['look', 'act']);
  assert.deepEqual(g[0].verbs.map((v) => v.name), ['status', 'forensics', 'screenshot', 'console', 'guest', 'tasks']);
  assert.deepEqual(g[1].verbs.map((v) => v.name), ['reset', 'stop', 'start', 'cycle', 'unlock', 'guest-exec']);
  const odd = grouped(verbList({ verbs: [{ name: 'new-read', mutating: false }, { name: 'new-act' }] }));
  assert.deepEqual(odd.map((x) => x.verbs.map((v) => v.name)), [['new-read'], ['new-act']], 'an unknown mutating verb is an act');
  assert.ok(VERBS.length === 12);
});

test('checkArgv', () => {
  assert.equal(checkArgv(['systemctl', 'restart', 'ssh']), '');
  assert.equal(checkArgv(['echo', '$(id) ; rm -rf /']), '', 'shell syntax is just an argument');
  assert.equal(checkArgv(['printf', '']), '');
  assert.match(checkArgv([]), /command/);
  assert.match(checkArgv(['']), /empty/);
  assert.match(checkArgv(Array(17).fill('a')), /16/);
  assert.match(checkArgv(['echo', 'x'.repeat(513)]), /512/);
  assert.match(checkArgv(['echo', 'é'.repeat(257)]), /512/, 'bytes, not characters');
  assert.match(checkArgv(['e', ...Array(15).fill('y'.repeat(274))]), /4096/);
  assert.match(checkArgv(['echo', 'a\0b']), /NUL/);
  assert.match(checkArgv(['echo', 7]), /not text/);
});

test('transcript-verb-image-and-argv', () => {
  let t = empty();
  t = apply(t, [
    { id: 1, type: 'approval', data: { approval_id: 'a1', verb: 'guest-exec', args: ['systemctl', 'restart', 'ssh'], state: 'pending' } },
    { id: 2, type: 'approval', data: { approval_id: 'a1', verb: 'guest-exec', state: 'approved' } },
    { id: 3, type: 'verb', data: { verb: 'guest-exec', actor: 'agent', exit_code: 0, output: '{}', duration_ms: 5, args: ['systemctl', 'restart', 'ssh'] } },
    { id: 4, type: 'verb', data: { verb: 'screenshot', actor: 'alice', exit_code: 0, duration_ms: 9, image: 'screenshot-1-00000000.png' } },
    { id: 5, type: 'verb', data: { verb: 'status', actor: 'alice', exit_code: 0, output: 'x', duration_ms: 1, args: [1, 2] } },
  ]);
  const [appr, exec, shot, st] = t.messages;
  assert.deepEqual(appr.args, ['systemctl', 'restart', 'ssh'], 'the argv stays on the card once resolved');
  assert.equal(appr.state, 'approved');
  assert.deepEqual(exec.args, ['systemctl', 'restart', 'ssh']);
  assert.equal(shot.image, 'screenshot-1-00000000.png');
  assert.equal(st.args, null, 'an argv that is not strings is dropped');
});
