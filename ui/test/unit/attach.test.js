// attach (src/lib/api.js) with a fake EventSource and a fake page: resume
// by id, reconnect when the browser gives up, reconnect on wake-up when the
// stream may be stale, and batch events.
import { test, beforeEach, afterEach, mock } from 'node:test';
import assert from 'node:assert/strict';

class FakeEventSource {
  static all = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.listeners = {};
    this.closed = false;
    FakeEventSource.all.push(this);
  }
  addEventListener(type, fn) {
    (this.listeners[type] ??= []).push(fn);
  }
  close() {
    this.closed = true;
    this.readyState = 2;
  }
  // test helpers
  open() {
    this.readyState = 1;
    this.onopen?.();
  }
  emit(id, type, data) {
    for (const fn of this.listeners[type] ?? []) fn({ lastEventId: String(id), type, data: JSON.stringify(data) });
  }
  fail(closed) {
    this.readyState = closed ? 2 : 0;
    this.onerror?.();
  }
}

function fakeTarget() {
  const handlers = {};
  return {
    handlers,
    addEventListener: (t, fn) => { (handlers[t] ??= []).push(fn); },
    removeEventListener: (t, fn) => { handlers[t] = (handlers[t] ?? []).filter((f) => f !== fn); },
    fire: (t, e = {}) => { for (const fn of handlers[t] ?? []) fn(e); },
  };
}

let doc;
let win;
let now;
const realNow = Date.now;

beforeEach(() => {
  FakeEventSource.all = [];
  doc = { ...fakeTarget(), visibilityState: 'visible' };
  win = fakeTarget();
  now = 1_000_000;
  Date.now = () => now;
  globalThis.EventSource = FakeEventSource;
  globalThis.document = doc;
  globalThis.window = win;
  Object.defineProperty(globalThis, 'navigator', { value: { onLine: true }, configurable: true });
  mock.timers.enable({ apis: ['setTimeout'] });
});

afterEach(() => {
  mock.timers.reset();
  Date.now = realNow;
});

const { attach } = await import('../../src/lib/api.js');

function start(lastId = 0) {
  const got = { events: [], states: [] };
  const h = attach('3f1c2a9e-8d4b-4c1a-9e2f-0a1b2c3d4e5f', lastId, {
    onEvents: (evs) => got.events.push(...evs),
    onState: (s) => got.states.push(s),
  });
  return { h, got, es: () => FakeEventSource.all.at(-1) };
}

test('first-connect-resumes-by-id', () => {
  const { es } = start(41);
  assert.match(es().url, /\/api\/sessions\/3f1c2a9e-8d4b-4c1a-9e2f-0a1b2c3d4e5f\/stream\?last_event_id=41$/);
  start(0);
  assert.ok(!es().url.includes('last_event_id'), 'a fresh attach replays everything');
});

test('states', () => {
  const { es, got } = start();
  es().open();
  es().fail(false); // the browser reconnects by itself
  es().open();
  assert.deepEqual(got.states, ['reconnecting', 'live', 'reconnecting', 'live']);
});

test('events-batched', () => {
  const { es, got } = start();
  es().open();
  es().emit(1, 'user', { text: 'hi' });
  es().emit(2, 'text', { delta: 'a' });
  assert.equal(got.events.length, 0, 'held until the batch flushes');
  mock.timers.tick(20);
  assert.deepEqual(got.events.map((e) => [e.id, e.type]), [[1, 'user'], [2, 'text']]);
  assert.deepEqual(got.events[0].data, { text: 'hi' });
});

test('browser-gives-up-we-reconnect-from-last-id', () => {
  const { es, got } = start();
  const first = es();
  first.open();
  first.emit(1, 'user', { text: 'hi' });
  first.emit(2, 'text', { delta: 'a' });
  first.fail(true); // e.g. the server answered 502: EventSource closes for good
  assert.equal(FakeEventSource.all.length, 1, 'not at once');
  mock.timers.tick(1000);
  assert.equal(FakeEventSource.all.length, 2);
  assert.match(es().url, /last_event_id=2$/);
  assert.ok(first.closed);
  void got;
});

test('backoff-grows', () => {
  const { es } = start();
  es().fail(true);
  mock.timers.tick(1000);
  es().fail(true);
  mock.timers.tick(1999);
  assert.equal(FakeEventSource.all.length, 2, 'second retry waits longer');
  mock.timers.tick(1);
  assert.equal(FakeEventSource.all.length, 3);
});

test('wake-after-long-sleep-reconnects', () => {
  const { es } = start();
  es().open();
  es().emit(7, 'text', { delta: 'a' });
  doc.visibilityState = 'hidden';
  doc.fire('visibilitychange');
  now += 60_000; // the phone slept a minute: the socket may be dead
  doc.visibilityState = 'visible';
  doc.fire('visibilitychange');
  assert.equal(FakeEventSource.all.length, 2);
  assert.match(es().url, /last_event_id=7$/);
  assert.ok(FakeEventSource.all[0].closed);
});

test('short-switch-keeps-stream', () => {
  const { es } = start();
  es().open();
  doc.visibilityState = 'hidden';
  doc.fire('visibilitychange');
  now += 2_000;
  doc.visibilityState = 'visible';
  doc.fire('visibilitychange');
  assert.equal(FakeEventSource.all.length, 1);
});

test('pageshow-from-bfcache-reconnects', () => {
  const { es } = start();
  es().open();
  win.fire('pageshow', { persisted: true });
  assert.equal(FakeEventSource.all.length, 2);
  win.fire('pageshow', { persisted: false });
  assert.equal(FakeEventSource.all.length, 2, 'a normal load needs nothing');
});

test('offline-and-back', () => {
  const { es, got } = start();
  es().open();
  navigator.onLine = false;
  win.fire('offline');
  assert.equal(got.states.at(-1), 'offline');
  navigator.onLine = true;
  es().fail(true);
  win.fire('online');
  assert.equal(FakeEventSource.all.length, 2, 'reconnects at once when the network returns');
});

test('close-stops-everything', () => {
  const { h, es, got } = start();
  es().open();
  es().emit(1, 'text', { delta: 'a' });
  h.close();
  mock.timers.tick(100);
  assert.equal(got.events.length, 0, 'nothing delivered after close');
  assert.ok(es().closed);
  assert.deepEqual(doc.handlers.visibilitychange, []);
  assert.deepEqual(win.handlers.pageshow, []);
});
