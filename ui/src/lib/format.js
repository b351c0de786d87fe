// Small pure helpers for what the transcript and the VM sheet display.

/** formatDuration renders milliseconds as "850 ms", "12.3 s" or "4 min 05 s". */
export function formatDuration(ms) {
  if (typeof ms !== 'number' || !Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, '0')} s`;
}

/** formatCost renders US dollars with enough digits to see small turns. */
export function formatCost(usd) {
  if (typeof usd !== 'number' || !Number.isFinite(usd) || usd < 0) return '';
  if (usd === 0) return '$0';
  if (usd < 0.01) return `$${usd.toFixed(4)}`;
  return `$${usd.toFixed(2)}`;
}

/** OUTPUT_CAP is how many characters of one output the page keeps in the DOM. */
export const OUTPUT_CAP = 64 * 1024;

/**
 * capText keeps the first `max` characters of s and says how much was left
 * out, so a huge output cannot freeze the phone.
 */
export function capText(s, max = OUTPUT_CAP) {
  const text = typeof s === 'string' ? s : '';
  if (text.length <= max) return { text, cut: 0 };
  return { text: text.slice(0, max), cut: text.length - max };
}

/**
 * segments splits model text into prose and fenced code blocks
 * (```lang … ```), so code keeps its layout. The pieces are plain strings
 * rendered as text nodes: nothing here is ever parsed as HTML.
 */
export function segments(s) {
  const text = typeof s === 'string' ? s : '';
  const out = [];
  const re = /^```[^\n`]*\n([\s\S]*?)(?:^```[ \t]*$|(?![\s\S]))/gm;
  let at = 0;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (m.index > at) out.push({ code: false, text: text.slice(at, m.index) });
    out.push({ code: true, text: m[1].replace(/\n$/, '') });
    at = re.lastIndex;
    if (m[0] === '') re.lastIndex++;
  }
  if (at < text.length) out.push({ code: false, text: text.slice(at) });
  return out
    .map((p) => (p.code ? p : { code: false, text: p.text.replace(/^\n+|\n+$/g, '') }))
    .filter((p) => p.code || p.text !== '');
}

/** shortTime renders an ISO time as a short local time, or '' when invalid. */
export function shortTime(iso, now = new Date()) {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return '';
  const sameDay = d.toDateString() === now.toDateString();
  const hm = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  if (sameDay) return hm;
  return `${d.getFullYear()}-${String(d.getMonth() + 1).padStart(2, '0')}-${String(d.getDate()).padStart(2, '0')} ${hm}`;
}

/**
 * footer is a turn's result line: how it ended, how long it took, what it
 * cost, and how many model calls it made.
 */
export function footer(m) {
  let head = 'Done';
  if (m.interrupted) head = m.interrupted === 'timeout' ? 'Timed out' : 'Stopped';
  else if (m.isError) head = `Failed (${m.subtype || 'error'})`;
  const parts = [head, formatDuration(m.durationMs), formatCost(m.costUsd)];
  if (typeof m.numTurns === 'number') parts.push(`${m.numTurns} ${m.numTurns === 1 ? 'step' : 'steps'}`);
  return parts.filter(Boolean).join(' · ');
}

/** retryLine says that claude is retrying the API, and why. */
export function retryLine(m) {
  let s = 'API retry';
  if (typeof m.attempt === 'number') s += ` ${m.attempt}${typeof m.maxRetries === 'number' ? `/${m.maxRetries}` : ''}`;
  if (typeof m.retryInMs === 'number') s += ` in ${formatDuration(m.retryInMs)}`;
  if (m.error) s += `: ${m.error}`;
  return s;
}
