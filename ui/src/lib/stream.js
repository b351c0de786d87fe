// Pure decisions about the event stream, kept apart from EventSource so a
// test can check them.

/** EventSource readyState values. */
export const CONNECTING = 0;
export const OPEN = 1;
export const CLOSED = 2;

/** STALE_HIDDEN_MS: a page hidden this long may hold a dead stream. */
export const STALE_HIDDEN_MS = 15_000;

/**
 * isStale says whether a stream must be replaced when the page becomes
 * visible again: it is closed, the page was restored from the back-forward
 * cache, or it was hidden long enough for the network (or a proxy) to have
 * dropped the connection without the browser noticing.
 */
export function isStale({ readyState, hiddenMs = 0, restored = false }) {
  if (restored) return true;
  if (readyState === CLOSED) return true;
  return hiddenMs >= STALE_HIDDEN_MS;
}

/**
 * connState is what the indicator shows: offline when the browser says so,
 * live when the stream is open, reconnecting otherwise.
 */
export function connState({ online, readyState }) {
  if (online === false) return 'offline';
  if (readyState === OPEN) return 'live';
  return 'reconnecting';
}

/** backoffMs is the delay before reconnect attempt n (0-based), capped. */
export function backoffMs(n) {
  const k = Math.max(0, Math.min(n, 5));
  return Math.min(1000 * 2 ** k, 30_000);
}

/**
 * parseEvent turns an SSE message (its lastEventId, type and data text) into
 * a transcript event, or null when it is not one. The data is the event's
 * data object; a whole log entry ({id, event, data}) is unwrapped too.
 */
export function parseEvent(lastEventId, type, text) {
  const id = Number(lastEventId);
  if (!Number.isSafeInteger(id) || id <= 0) return null;
  let data;
  try {
    data = JSON.parse(text);
  } catch {
    return null;
  }
  if (data && typeof data === 'object' && 'event' in data && 'data' in data && data.id === id) {
    data = data.data;
  }
  return { id, type, data };
}
