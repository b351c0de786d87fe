// The notification settings' pure helpers (no network, no DOM): unit
// tested in test/unit/push.test.js.

/** KIND_LABELS names the kinds a subscription may choose. */
export const KIND_LABELS = {
  approval: 'An approval is waiting',
  permission: 'A permission is waiting',
  turn: 'A turn ended while the page was closed',
  vm: 'The VM stops, locks, is unreachable or runs again',
};

/** keyBytes decodes a base64url VAPID key for PushManager.subscribe. */
export function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - (b64url.length % 4)) % 4);
  const raw = atob(b64);
  const out = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) out[i] = raw.charCodeAt(i);
  return out;
}

/** deliveryText says what happened to the last delivery, in words. */
export function deliveryText(d, now = Date.now()) {
  if (!d) return 'Nothing sent yet.';
  const when = ago(new Date(d.at).getTime(), now);
  switch (d.status) {
    case 'ok':
      return `Delivered ${when}${d.code ? ` (push service answered ${d.code})` : ''}.`;
    case 'dropped':
      return `Dropped ${when}: too many notifications were waiting.`;
    case 'failed':
      return `Failed ${when}: ${d.error || (d.code ? `push service answered ${d.code}` : 'unknown error')}.`;
    default:
      return `Unknown status ${when}.`;
  }
}

function ago(t, now) {
  if (!Number.isFinite(t)) return 'at an unknown time';
  const s = Math.max(0, Math.round((now - t) / 1000));
  if (s < 5) return 'just now';
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  if (s < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

/** endpointHost is the push service's host name, for display. */
export function endpointHost(endpoint) {
  try {
    return new URL(endpoint).host;
  } catch {
    return 'unknown push service';
  }
}

/** support says why this browser cannot take push notifications, or ''. */
export function support(win) {
  if (!('serviceWorker' in win.navigator)) return 'This browser has no service workers (on iPhone, add breakglass to the home screen first).';
  if (!('PushManager' in win)) return 'This browser cannot receive push notifications (on iPhone, add breakglass to the home screen first).';
  if (!('Notification' in win)) return 'This browser cannot show notifications.';
  return '';
}
