// The service worker: it shows breakglass's push notifications and opens
// or focuses the page on a tap. It handles nothing else (no fetch handler,
// no cache): the page always comes from the server. See
// docs/notifications.md.
//
// A payload is {kind, title, body, url, tag}. The link must stay on this
// origin; anything else opens the page's root. No action buttons:
// approving needs the page and the passkey.
'use strict';

const MAX_TITLE = 120;
const MAX_BODY = 300;

/** sameOriginURL returns url resolved on this origin, or the root. */
function sameOriginURL(url) {
  try {
    const u = new URL(typeof url === 'string' && url ? url : '/', self.location.origin);
    return u.origin === self.location.origin ? u.href : new URL('/', self.location.origin).href;
  } catch {
    return new URL('/', self.location.origin).href;
  }
}

/** notificationOf turns a push payload into showNotification's arguments. */
function notificationOf(data) {
  const m = data && typeof data === 'object' ? data : {};
  const title = typeof m.title === 'string' && m.title ? m.title.slice(0, MAX_TITLE) : 'breakglass';
  const options = {
    body: typeof m.body === 'string' ? m.body.slice(0, MAX_BODY) : '',
    icon: '/icon-192.png',
    badge: '/icon-192.png',
    data: { url: sameOriginURL(m.url), kind: typeof m.kind === 'string' ? m.kind : '' },
  };
  if (typeof m.tag === 'string' && m.tag) {
    options.tag = m.tag.slice(0, 64);
    options.renotify = true;
  }
  return [title, options];
}

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

self.addEventListener('push', (event) => {
  let data = null;
  try {
    data = event.data ? event.data.json() : null;
  } catch {
    data = null;
  }
  const [title, options] = notificationOf(data);
  event.waitUntil(self.registration.showNotification(title, options));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = sameOriginURL(event.notification.data && event.notification.data.url);
  event.waitUntil(
    (async () => {
      const wins = await self.clients.matchAll({ type: 'window', includeUncontrolled: true });
      for (const w of wins) {
        if (new URL(w.url).origin !== self.location.origin) continue;
        // An open page switches to the session itself (main.js).
        w.postMessage({ type: 'breakglass-open', url });
        await w.focus();
        return;
      }
      await self.clients.openWindow(url);
    })(),
  );
});
