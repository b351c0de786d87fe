import { test } from 'node:test';
import assert from 'node:assert/strict';
import { KIND_LABELS, deliveryText, endpointHost, keyBytes, support } from '../../src/lib/push.js';

test('keyBytes decodes base64url without padding', () => {
  // 65 bytes: an uncompressed P-256 point starts with 0x04.
  const key = 'BNcRdreALRFXTkOOUHK1EtK2wtaz5Ry4YfYCA_0QTpQtUbVlUls0VJXg7A8u-Ts1XbjhazAkj7I99e8QcYP7DkM';
  const b = keyBytes(key);
  assert.equal(b.length, 65);
  assert.equal(b[0], 4);
  assert.deepEqual([...keyBytes('-_8')], [0xfb, 0xff]);
});

test('deliveryText says what happened', () => {
  const now = Date.parse('2026-12-02T06:00:00Z');
  assert.equal(deliveryText(null, now), 'Nothing sent yet.');
  assert.equal(deliveryText({ status: 'ok', code: 201, at: '2026-12-02T05:59:58Z' }, now), 'Delivered just now (push service answered 201).');
  assert.equal(deliveryText({ status: 'failed', code: 503, error: 'the push service answered 503', at: '2026-12-02T05:58:00Z' }, now), 'Failed 2 min ago: the push service answered 503.');
  assert.equal(deliveryText({ status: 'failed', error: 'timed out', at: '2026-12-02T03:00:00Z' }, now), 'Failed 3 h ago: timed out.');
  assert.equal(deliveryText({ status: 'dropped', at: '2026-12-01T06:00:00Z' }, now), 'Dropped 1 d ago: too many notifications were waiting.');
  assert.equal(deliveryText({ status: 'ok', at: 'garbage' }, now), 'Delivered at an unknown time.');
});

test('endpointHost shows the push service only', () => {
  assert.equal(endpointHost('https://fcm.googleapis.com/fcm/send/abc'), 'fcm.googleapis.com');
  assert.equal(endpointHost('not a url'), 'unknown push service');
});

test('every kind has a label', () => {
  assert.deepEqual(Object.keys(KIND_LABELS), ['approval', 'permission', 'turn', 'vm']);
});

test('support names what is missing', () => {
  assert.match(support({ navigator: {} }), /service workers/);
  assert.match(support({ navigator: { serviceWorker: {} } }), /push notifications/);
  assert.match(support({ navigator: { serviceWorker: {} }, PushManager: 1 }), /show notifications/);
  assert.equal(support({ navigator: { serviceWorker: {} }, PushManager: 1, Notification: 1 }), '');
});
