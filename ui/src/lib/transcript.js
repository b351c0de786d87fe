// The transcript fold: session events in, chat messages out.
//
// Pure: no DOM, no network, no clock. A transcript is a plain value;
// `apply` returns a new one and never mutates its input, so a component can
// hold it in one $state and a test can replay any sequence of events.
//
// Events are the server's log entries (docs/web.md, Events): { id, type, data }, ids
// 1, 2, 3… per session. The fold drops an id it has already seen (an
// EventSource reconnect or a second attach may replay it) and tolerates ids
// arriving out of order: a late, lower id is slotted in and the messages are
// folded again from the ordered log, so the result never depends on
// arrival order.

/** Event types of the server's vocabulary (internal/event). */
export const EVENT_TYPES = Object.freeze([
  'session', 'user', 'status', 'text', 'tool', 'tool_result',
  'result', 'verb', 'approval', 'permission', 'error', 'done',
]);

/** empty returns a transcript with no events. */
export function empty() {
  return {
    events: [], // ordered by id, no duplicates
    lastId: 0,
    messages: [],
    running: false,
    status: null, // latest status while a turn runs: { state, attempt, … }
    session: null, // { sessionId, model, tools } from the last session event
  };
}

/**
 * apply folds one event or a list of events into a transcript and returns
 * the new transcript (the same object when nothing was new). Events with an
 * id already seen, a missing or non-positive id, or no type are dropped.
 */
export function apply(t, evs) {
  const list = Array.isArray(evs) ? evs : [evs];
  let next = t;
  let owned = false;
  let refold = false;
  for (const ev of list) {
    if (!valid(ev)) continue;
    if (ev.id <= next.lastId && has(next.events, ev.id)) continue; // duplicate
    if (!owned) {
      next = copy(next);
      owned = true;
    }
    if (ev.id > next.lastId) {
      step(next, ev);
    } else {
      // A late, lower id: slot it in and fold everything again.
      insertSorted(next.events, ev);
      refold = true;
    }
  }
  return refold ? fold(next.events) : next;
}

/** fold builds a transcript from a list of events in any order. */
export function fold(evs) {
  const sorted = evs.filter(valid).slice().sort((a, b) => a.id - b.id);
  let t = copy(empty());
  for (const ev of sorted) {
    if (ev.id <= t.lastId) continue; // duplicate
    t = step(t, ev);
  }
  return t;
}

function valid(ev) {
  return ev != null && Number.isSafeInteger(ev.id) && ev.id > 0 &&
    typeof ev.type === 'string' && ev.type !== '';
}

function copy(t) {
  return { ...t, events: t.events.slice(), messages: t.messages.slice() };
}

function has(events, id) {
  let lo = 0;
  let hi = events.length - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (events[mid].id === id) return true;
    if (events[mid].id < id) lo = mid + 1;
    else hi = mid - 1;
  }
  return false;
}

function insertSorted(events, ev) {
  let i = events.length;
  while (i > 0 && events[i - 1].id > ev.id) i--;
  events.splice(i, 0, ev);
}

function str(v) {
  return typeof v === 'string' ? v : '';
}

/** strs keeps an array of strings (an argv), or null for anything else. */
function strs(v) {
  return Array.isArray(v) && v.every((x) => typeof x === 'string') ? v.slice() : null;
}

function num(v) {
  return typeof v === 'number' && Number.isFinite(v) ? v : null;
}

// step appends ev (whose id is above lastId) to a transcript the caller
// owns (already copied) and returns it.
function step(t, ev) {
  t.events.push(ev);
  t.lastId = ev.id;
  const d = ev.data && typeof ev.data === 'object' ? ev.data : {};
  const msgs = t.messages;
  const last = msgs[msgs.length - 1];
  switch (ev.type) {
    case 'session':
      t.session = {
        sessionId: str(d.session_id),
        model: str(d.model),
        tools: Array.isArray(d.tools) ? d.tools.filter((x) => typeof x === 'string') : [],
      };
      break;
    case 'user':
      t.running = true;
      t.status = null;
      msgs.push({ kind: 'user', key: ev.id, text: str(d.text), actor: str(d.actor), steer: d.steer === true });
      break;
    case 'status':
      t.status = {
        state: str(d.state),
        attempt: num(d.attempt),
        maxRetries: num(d.max_retries),
        retryInMs: num(d.retry_in_ms),
        error: str(d.error),
      };
      if (t.status.state === 'retrying') {
        // One retry line per run of retries, updated in place.
        const m = { kind: 'retry', key: ev.id, ...t.status };
        if (last && last.kind === 'retry') msgs[msgs.length - 1] = { ...m, key: last.key };
        else msgs.push(m);
      }
      break;
    case 'text': {
      const delta = str(d.delta);
      t.status = null;
      if (delta === '') break;
      if (last && last.kind === 'text') msgs[msgs.length - 1] = { ...last, text: last.text + delta };
      else msgs.push({ kind: 'text', key: ev.id, text: delta });
      break;
    }
    case 'tool':
      t.status = null;
      msgs.push({
        kind: 'tool', key: ev.id, toolUseId: str(d.tool_use_id), name: str(d.name),
        input: str(d.input), output: null, isError: false,
      });
      break;
    case 'tool_result': {
      const id = str(d.tool_use_id);
      const i = findLast(msgs, (m) => m.kind === 'tool' && m.toolUseId === id && m.output === null);
      if (i >= 0) {
        msgs[i] = { ...msgs[i], output: str(d.output), isError: d.is_error === true };
      } else {
        // A result whose call we never saw: show it on its own card.
        msgs.push({
          kind: 'tool', key: ev.id, toolUseId: id, name: '', input: '',
          output: str(d.output), isError: d.is_error === true,
        });
      }
      break;
    }
    case 'result':
      msgs.push({
        kind: 'result', key: ev.id, subtype: str(d.subtype), isError: d.is_error === true,
        text: str(d.text), durationMs: num(d.duration_ms), numTurns: num(d.num_turns),
        costUsd: num(d.total_cost_usd),
      });
      break;
    case 'verb':
      msgs.push({
        kind: 'verb', key: ev.id, verb: str(d.verb), actor: str(d.actor),
        exitCode: num(d.exit_code), output: str(d.output), durationMs: num(d.duration_ms),
        error: str(d.error), image: str(d.image), args: strs(d.args),
      });
      break;
    case 'approval': {
      const aid = str(d.approval_id);
      const state = str(d.state) || 'pending';
      const i = findLast(msgs, (m) => m.kind === 'approval' && m.approvalId === aid);
      if (i >= 0) msgs[i] = { ...msgs[i], state, verb: str(d.verb) || msgs[i].verb, args: strs(d.args) ?? msgs[i].args };
      else msgs.push({ kind: 'approval', key: ev.id, approvalId: aid, verb: str(d.verb), args: strs(d.args), state });
      break;
    }
    case 'permission': {
      // One card per request id: its pending event makes it, the event
      // that resolves it (same id) updates it in place.
      const rid = str(d.request_id);
      const state = str(d.state) || 'pending';
      const i = findLast(msgs, (m) => m.kind === 'permission' && m.requestId === rid);
      if (i >= 0) {
        msgs[i] = { ...msgs[i], state, by: str(d.by), message: str(d.message) };
      } else {
        msgs.push({
          kind: 'permission', key: ev.id, requestId: rid, tool: str(d.tool), input: str(d.input),
          cwd: str(d.cwd), description: str(d.description), state, by: str(d.by), message: str(d.message),
        });
      }
      break;
    }
    case 'error':
      msgs.push({ kind: 'error', key: ev.id, message: str(d.message) });
      break;
    case 'done':
      t.running = false;
      t.status = null;
      if (str(d.outcome) === 'cancelled' || str(d.outcome) === 'timeout') {
        // The CLI closes an interrupted turn with an error result; it is the
        // interruption, not a failure of its own.
        const r = findLast(msgs, (m) => m.kind === 'result' || m.kind === 'user');
        if (r >= 0 && msgs[r].kind === 'result') msgs[r] = { ...msgs[r], interrupted: str(d.outcome) };
      }
      // A pending approval or permission cannot outlive its turn.
      for (let i = 0; i < msgs.length; i++) {
        if ((msgs[i].kind === 'approval' || msgs[i].kind === 'permission') && msgs[i].state === 'pending') {
          msgs[i] = { ...msgs[i], state: 'expired' };
        }
      }
      msgs.push({
        kind: 'done', key: ev.id, outcome: str(d.outcome), exitCode: num(d.exit_code),
        durationMs: num(d.duration_ms),
      });
      break;
    default:
      // Unknown types are recorded (their id is seen) and otherwise ignored.
      break;
  }
  return t;
}

function findLast(arr, pred) {
  for (let i = arr.length - 1; i >= 0; i--) if (pred(arr[i])) return i;
  return -1;
}
