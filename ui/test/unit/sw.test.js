// The service worker (public/sw.js) run in a node:vm context with a fake
// `self`: what a push shows, and what a tap opens or focuses. The real
// browser runs the push handler in the Chromium e2e too (DevTools can
// deliver a push there, but cannot tap a notification).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import vm from 'node:vm';

const SRC = readFileSync(new URL('../../public/sw.js', import.meta.url), 'utf8');
const ORIGIN = 'https://bg.example';

function load({ windows = [] } = {}) {
  const handlers = {};
  const shown = [];
  const opened = [];
  const self = {
    location: new URL(`${ORIGIN}/sw.js`),
    addEventListener: (type, fn) => (handlers[type] = fn),
    skipWaiting: () => {},
    registration: { showNotification: async (title, options) => shown.push({ title, options }) },
    clients: {
      claim: async () => {},
      matchAll: async () => windows,
      openWindow: async (url) => opened.push(url),
    },
  };
  vm.runInNewContext(SRC, { self, URL });
  const fire = async (type, event) => {
    let done;
    handlers[type]({ ...event, waitUntil: (p) => (done = p) });
    await done;
  };
  return { fire, shown, opened };
}

const pushEvent = (payload) => ({ data: { json: () => (typeof payload === 'string' ? JSON.parse(payload) : payload) } });

test('push shows the title, body, tag and a same-origin link, no actions', async () => {
  const sw = load();
  await sw.fire('push', pushEvent({ kind: 'approval', title: 'Approval waiting: reset', body: 'Open the session.', url: '/#/s/abc', tag: 'approval-abc' }));
  assert.equal(sw.shown.length, 1);
  const { title, options } = sw.shown[0];
  assert.equal(title, 'Approval waiting: reset');
  assert.equal(options.body, 'Open the session.');
  assert.equal(options.tag, 'approval-abc');
  assert.equal(options.data.url, `${ORIGIN}/#/s/abc`);
  assert.equal(options.actions, undefined, 'no action buttons');
});

test('push with a foreign link, a bad payload or none still shows something safe', async () => {
  for (const [name, ev, wantTitle] of [
    ['foreign-url', pushEvent({ title: 'VM stopped', url: 'https://evil.example/' }), 'VM stopped'],
    ['javascript-url', pushEvent({ title: 'x', url: 'javascript:alert(1)' }), 'x'],
    ['not-json', pushEvent('{'), 'breakglass'],
    ['no-data', { data: null }, 'breakglass'],
    ['long-title', pushEvent({ title: 'a'.repeat(500) }), 'a'.repeat(120)],
  ]) {
    const sw = load();
    await sw.fire('push', ev);
    assert.equal(sw.shown[0].title, wantTitle, name);
    assert.equal(sw.shown[0].options.data.url, `${ORIGIN}/`, name);
  }
});

test('a tap opens the session when no page is open', async () => {
  const sw = load();
  await sw.fire('notificationclick', { notification: { close() {}, data: { url: `${ORIGIN}/#/s/abc` } } });
  assert.deepEqual(sw.opened, [`${ORIGIN}/#/s/abc`]);
});

test('a tap focuses an open page and asks it to show the session', async () => {
  const calls = [];
  const win = { url: `${ORIGIN}/#/s/other`, postMessage: (m) => calls.push(['post', m]), focus: async () => calls.push(['focus']) };
  const foreign = { url: 'https://elsewhere.example/', postMessage: () => calls.push(['wrong']), focus: async () => calls.push(['wrong']) };
  const sw = load({ windows: [foreign, win] });
  let closed = false;
  await sw.fire('notificationclick', { notification: { close: () => (closed = true), data: { url: `${ORIGIN}/#/s/abc` } } });
  assert.ok(closed);
  assert.deepEqual(JSON.parse(JSON.stringify(calls)), [['post', { type: 'breakglass-open', url: `${ORIGIN}/#/s/abc` }], ['focus']]);
  assert.deepEqual(sw.opened, []);
});
