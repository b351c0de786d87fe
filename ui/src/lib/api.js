// All network code of the page: the JSON API and the session event stream.
//
// Same-origin only: identity comes from the edge proxy's cookie/header, so
// the page holds no token and sends requests with credentials 'same-origin'.

import { EVENT_TYPES } from './transcript.js';
import { CLOSED, OPEN, backoffMs, connState, isStale, parseEvent } from './stream.js';

/**
 * ApiError is a non-2xx answer: code is the server's machine-readable
 * reason (every error body of the web carries one; 'network' when there was
 * no answer), status the HTTP status (0: no answer). Branch on code.
 */
export class ApiError extends Error {
  constructor(status, message, code, reason = '') {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
    // reason is a presence refusal's check (e.g. challenge_expired).
    this.reason = reason;
  }
}

async function call(method, path, body) {
  const init = { method, credentials: 'same-origin', headers: { Accept: 'application/json' } };
  if (body !== undefined) {
    init.headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'no answer from the server (network down?)', 'network');
  }
  const text = await res.text().catch(() => '');
  let data = null;
  if (text !== '') {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  const code = data && typeof data.code === 'string' ? data.code : '';
  if (code === 'unauthorized' || (res.status === 401 && code === '')) {
    // The sign-in expired (our answer, or the edge proxy's own 401 without
    // a code): a reload goes through it again.
    throw new ApiError(res.status, 'not signed in: sign in with your passkey, or reload the page', 'unauthorized');
  }
  if (!res.ok) {
    const why = data && typeof data.error === 'string' ? data.error : text.slice(0, 200) || res.statusText;
    const reason = data && typeof data.reason === 'string' ? data.reason : '';
    throw new ApiError(res.status, `${res.status}: ${why}`, code || 'error', reason);
  }
  return data;
}

const sessionPath = (id) => `/api/sessions/${encodeURIComponent(id)}`;

/**
 * listSessions returns the sessions, newest first: those whose title or
 * prompts contain `q` when given, the archived ones when `archived`.
 */
export function listSessions({ q = '', archived = false } = {}) {
  const p = new URLSearchParams();
  if (q) p.set('q', q);
  if (archived) p.set('archived', '1');
  const qs = p.toString();
  return call('GET', `/api/sessions${qs ? `?${qs}` : ''}`);
}
/** createSession starts a new session and returns it ({ id, … }). */
export const createSession = () => call('POST', '/api/sessions', {});
/** getSession returns one session's summary. */
export const getSession = (id) => call('GET', sessionPath(id));
/** sendPrompt starts a turn. */
export const sendPrompt = (id, text) => call('POST', `${sessionPath(id)}/prompt`, { text });
/** renameSession sets a session's title. */
export const renameSession = (id, title) => call('PATCH', sessionPath(id), { title });
/** archiveSession hides a session from the list (its files are kept). */
export const archiveSession = (id) => call('DELETE', sessionPath(id));
/** restoreSession brings an archived session back into the list. */
export const restoreSession = (id) => call('POST', `${sessionPath(id)}/restore`, {});
/** exportPath is where a session's export is served: format 'md' or 'json'. */
export const exportPath = (id, format) => `${sessionPath(id)}/export?format=${format === 'json' ? 'json' : 'md'}`;

/**
 * fetchExport downloads a session's export as a File named as the server
 * names it.
 */
export async function fetchExport(id, format) {
  let res;
  try {
    res = await fetch(exportPath(id, format), { credentials: 'same-origin' });
  } catch {
    throw new ApiError(0, 'no answer from the server (network down?)', 'network');
  }
  if (!res.ok) {
    const text = await res.text().catch(() => '');
    let why = text.slice(0, 200) || res.statusText;
    let code = 'error';
    try {
      const body = JSON.parse(text);
      why = typeof body.error === 'string' ? body.error : why;
      code = typeof body.code === 'string' ? body.code : code;
    } catch {
      // not JSON: the text itself
    }
    throw new ApiError(res.status, `${res.status}: ${why}`, code);
  }
  const blob = await res.blob();
  const m = /filename="([^"]+)"/.exec(res.headers.get('Content-Disposition') ?? '');
  const name = m ? m[1] : `breakglass-${id.slice(0, 8)}.${format === 'json' ? 'json' : 'md'}`;
  return new File([blob], name, { type: blob.type || 'text/plain' });
}

/** setMode sets a session's agent mode: autopilot, careful or read-only. */
export const setMode = (id, mode) => call('PATCH', sessionPath(id), { mode });
/** answerPermission allows or denies a command the agent asked to run. */
export const answerPermission = (id, requestId, allow, message) =>
  call('POST', `${sessionPath(id)}/permissions/${encodeURIComponent(requestId)}`, message ? { allow, message } : { allow });
/** cancelTurn asks the running turn to stop. */
export const cancelTurn = (id) => call('POST', `${sessionPath(id)}/cancel`, {});
/**
 * answerApproval approves or denies an agent's mutating verb; approving
 * carries the operator's presence when the keyholder requires it.
 */
export const answerApproval = (id, aid, approve, presence) =>
  call('POST', `${sessionPath(id)}/approvals/${encodeURIComponent(aid)}`, presence ? { approve, presence } : { approve });
/** approvalChallenge returns WebAuthn request options bound to the approval's verb. */
export const approvalChallenge = (id, aid) =>
  call('POST', `${sessionPath(id)}/approvals/${encodeURIComponent(aid)}/challenge`, {});
/** verbChallenge returns WebAuthn request options bound to verb (and args). */
export const verbChallenge = (verb, args) =>
  call('POST', `/api/vm/${encodeURIComponent(verb)}/challenge`, args ? { args } : {});
/** loginOptions, login, logout: passkey sign-in (works with the SSO down). */
export const loginOptions = () => call('POST', '/api/login/options', {});
export const login = (presence) => call('POST', '/api/login', { presence });
export const logout = () => call('POST', '/api/logout', {});
/** enrollOptions and enroll: enrolling this phone's passkey with the code. */
export const enrollOptions = (name) => call('POST', '/api/enroll/options', { name });
export const enroll = (body) => call('POST', '/api/enroll', body);
/** vmInfo returns { vmid, verbs: [{ name, mutating }] }. */
export const vmInfo = () => call('GET', '/api/vm');
/**
 * runVerb runs a power verb; with a session id its result also goes into
 * that session's transcript. presence is the operator's assertion (when the
 * keyholder requires it for a mutating verb), args guest-exec's argv.
 */
export const runVerb = (verb, sessionId, presence, args) => {
  const body = sessionId ? { session_id: sessionId } : {};
  if (presence) body.presence = presence;
  if (Array.isArray(args)) body.args = args;
  return call('POST', `/api/vm/${encodeURIComponent(verb)}`, body);
};
/** vmHealth returns the health ladder (GET /api/vm/health). */
export const vmHealth = () => call('GET', '/api/vm/health');
/** imagePath is where a picture the web kept in a session is served. */
export const imagePath = (id, name) => `${sessionPath(id)}/images/${encodeURIComponent(name)}`;

/**
 * attach follows a session's event stream from after `lastId`.
 *
 * EventSource's own reconnect resumes by id (it sends Last-Event-ID). When
 * the browser gives up (the server answered with an error) or the page wakes
 * up with a possibly dead connection, attach opens a new stream from the last
 * id it delivered. Events are handed over in batches (onEvents) so a long
 * replay is folded in a few steps; onState gets 'live', 'reconnecting' or
 * 'offline'. Returns { close, check }.
 */
export function attach(id, lastId, { onEvents, onState }) {
  let last = lastId;
  let es = null;
  let closed = false;
  let failures = 0;
  let retryTimer = 0;
  let flushTimer = 0;
  let queue = [];
  let hiddenAt = document.visibilityState === 'hidden' ? Date.now() : 0;
  let state = '';

  const report = () => {
    const s = connState({ online: navigator.onLine, readyState: es ? es.readyState : CLOSED });
    if (s !== state) {
      state = s;
      onState(s);
    }
  };

  const flush = () => {
    flushTimer = 0;
    if (closed || queue.length === 0) return;
    const batch = queue;
    queue = [];
    onEvents(batch);
  };

  const onMessage = (e) => {
    const ev = parseEvent(e.lastEventId, e.type, e.data);
    if (ev === null) return;
    if (ev.id > last) last = ev.id;
    queue.push(ev);
    if (!flushTimer) flushTimer = setTimeout(flush, 16);
  };

  const open = () => {
    clearTimeout(retryTimer);
    retryTimer = 0;
    if (es) es.close();
    const url = `${sessionPath(id)}/stream${last > 0 ? `?last_event_id=${last}` : ''}`;
    es = new EventSource(url);
    for (const t of EVENT_TYPES) es.addEventListener(t, onMessage);
    es.onopen = () => {
      failures = 0;
      report();
    };
    es.onerror = () => {
      report();
      if (es.readyState === CLOSED && !closed) {
        // The browser will not retry (an HTTP error answer): we do, later.
        clearTimeout(retryTimer);
        retryTimer = setTimeout(open, backoffMs(failures++));
      }
    };
    report();
  };

  const check = (restored = false) => {
    if (closed) return;
    const hiddenMs = hiddenAt ? Date.now() - hiddenAt : 0;
    if (isStale({ readyState: es ? es.readyState : CLOSED, hiddenMs, restored })) {
      failures = 0;
      open();
    }
  };

  const onVisibility = () => {
    if (document.visibilityState === 'hidden') {
      hiddenAt = Date.now();
      return;
    }
    check();
    hiddenAt = 0;
  };
  const onPageShow = (e) => check(e.persisted === true);
  const onOnline = () => {
    report();
    if (!es || es.readyState !== OPEN) check(true);
  };
  const onOffline = () => report();

  document.addEventListener('visibilitychange', onVisibility);
  window.addEventListener('pageshow', onPageShow);
  window.addEventListener('online', onOnline);
  window.addEventListener('offline', onOffline);
  open();

  return {
    close() {
      closed = true;
      clearTimeout(retryTimer);
      clearTimeout(flushTimer);
      if (es) es.close();
      document.removeEventListener('visibilitychange', onVisibility);
      window.removeEventListener('pageshow', onPageShow);
      window.removeEventListener('online', onOnline);
      window.removeEventListener('offline', onOffline);
    },
    check,
  };
}

// ---- notifications (docs/notifications.md) ----

/** pushKey returns { public_key, kinds, ntfy }. */
export const pushKey = () => call('GET', '/api/push/key');
/** pushStatus returns { subscriptions: [{endpoint, events, created_at, last_delivery}], ntfy }. */
export const pushStatus = () => call('GET', '/api/push/subscriptions');
/** pushSubscribe stores the browser's subscription with the kinds it wants. */
export const pushSubscribe = (sub, events) => call('POST', '/api/push/subscriptions', { ...sub, events });
/** pushUnsubscribe forgets a subscription. */
export const pushUnsubscribe = (endpoint) => call('DELETE', '/api/push/subscriptions', { endpoint });
/** pushTest sends a test notification to every subscription and ntfy. */
export const pushTest = () => call('POST', '/api/push/test');

/**
 * readiness returns /readyz's body whatever its status (503 when the
 * keyholder does not answer still says what the sandbox got), or null.
 */
export async function readiness() {
  try {
    const res = await fetch('/readyz', { credentials: 'same-origin', headers: { Accept: 'application/json' } });
    return JSON.parse(await res.text());
  } catch {
    return null;
  }
}
