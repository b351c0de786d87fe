// A stand-in for the web's HTTP contract (docs/web.md), for working
// on the page without the Go stack: it serves ui/dist, keeps sessions with
// numbered event logs, streams them over SSE honouring Last-Event-ID, plays
// a scripted turn for each prompt, runs simulated power verbs, and resolves
// approvals. It is NOT the web: the end-to-end suite runs the real binary.
//
//   node test/e2e/standin.mjs [port]      (default 8088)
//
// Test hooks: POST /__standin/cut closes every open stream from the server
// side; GET /__standin/calls lists the mutating verbs run;
// POST /__standin/approval?session=<id> plays a turn in which the agent asks
// to reset, and finishes it once the approval is answered.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = fileURLToPath(new URL('../../dist/', import.meta.url));
const types = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.png': 'image/png', '.svg': 'image/svg+xml', '.json': 'application/json' };

const sessions = new Map(); // id -> { id, created_at, title, state, events, subs:Set }
const VERBS = [['status', false], ['forensics', false], ['reset', true], ['stop', true], ['start', true], ['cycle', true]];
let vm = 'running';
const calls = []; // mutating verbs run, as `qm <verb> 102`
const approvals = new Map(); // aid -> { session, verb, state }

function append(s, type, data) {
  const ev = { id: s.events.length + 1, type, data };
  s.events.push(ev);
  for (const res of s.subs) write(res, ev);
}

function write(res, ev) {
  res.write(`id: ${ev.id}\nevent: ${ev.type}\ndata: ${JSON.stringify(ev.data)}\n\n`);
}

async function playTurn(s, text) {
  s.state = 'running';
  s.cancelled = false;
  try {
    await turnSteps(s, text);
  } catch {
    append(s, 'done', { exit_code: 0, outcome: 'cancelled', duration_ms: 100 });
  }
  s.state = 'idle';
}

async function turnSteps(s, text) {
  const wait = async (ms) => {
    await new Promise((r) => setTimeout(r, ms));
    if (s.cancelled) throw new Error('cancelled');
  };
  if (!s.title) s.title = text.slice(0, 60);
  append(s, 'user', { text, actor: 'operator' });
  append(s, 'session', { session_id: s.id, model: 'sonnet', tools: ['Bash', 'Read', 'Grep', 'Glob'] });
  append(s, 'status', { state: 'requesting' });
  for (const d of ['Let me ', 'look at ', 'the devvm ', 'first.']) {
    await wait(150);
    append(s, 'text', { delta: d });
  }
  append(s, 'tool', { tool_use_id: `t${s.events.length}`, name: 'Bash', input: 'ssh devvm uptime' });
  await wait(200);
  append(s, 'tool_result', { tool_use_id: `t${s.events.length - 1}`, output: ' 03:14:07 up 2 days,  4:01,  0 users,  load average: 0.08, 0.03, 0.01', is_error: false });
  for (const d of ['The devvm ', 'is up; ', 'load is low.']) {
    await wait(150);
    append(s, 'text', { delta: d });
  }
  append(s, 'result', { subtype: 'success', is_error: false, text: 'The devvm is up; load is low.', duration_ms: 2100, num_turns: 2, total_cost_usd: 0.0123 });
  append(s, 'done', { exit_code: 0, outcome: 'success', duration_ms: 2200 });
}

function json(res, code, body) {
  res.writeHead(code, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store' });
  res.end(JSON.stringify(body));
}

async function body(req) {
  let b = '';
  for await (const c of req) b += c;
  try {
    return b ? JSON.parse(b) : {};
  } catch {
    return null;
  }
}

function runVerb(name) {
  const started = Date.now();
  if (name !== 'status' && name !== 'forensics') calls.push(`qm ${name} 102`);
  let output = '';
  if (name === 'status') output = `cpus: 4\nname: devvm\nqmpstatus: ${vm}\nstatus: ${vm === 'paused' ? 'running' : vm}\nvmid: 102\n`;
  else if (name === 'forensics') output = '== qm status ==\nstatus: running\n== qm config ==\nmemory: 16384\n';
  else if (name === 'stop') { vm = 'stopped'; output = ''; }
  else if (name === 'start' || name === 'reset' || name === 'cycle') { vm = 'running'; output = `${name}: ok\n`; }
  return { verb: name, vmid: 102, exit_code: 0, output, duration_ms: Date.now() - started + 40 };
}

const server = createServer(async (req, res) => {
  const url = new URL(req.url, 'http://x');
  const p = url.pathname;
  let m;
  if (p === '/__standin/cut' && req.method === 'POST') {
    let cut = 0;
    for (const s of sessions.values()) for (const r of s.subs) { r.destroy(); cut++; }
    return json(res, 200, { cut });
  }
  if (p === '/__standin/calls' && req.method === 'GET') return json(res, 200, calls);
  if (p === '/__standin/approval' && req.method === 'POST') {
    const s = sessions.get(url.searchParams.get('session'));
    if (!s) return json(res, 404, { error: 'no such session' });
    const aid = randomUUID();
    approvals.set(aid, { session: s, verb: 'reset', state: 'pending' });
    s.state = 'running';
    append(s, 'user', { text: 'The devvm is frozen. Reset it if you must.', actor: 'operator' });
    append(s, 'tool', { tool_use_id: 'tpve', name: 'Bash', input: 'pve reset' });
    append(s, 'approval', { approval_id: aid, verb: 'reset', state: 'pending' });
    return json(res, 200, { approval_id: aid });
  }
  if (p === '/api/sessions' && req.method === 'GET') {
    const list = [...sessions.values()].reverse().map(({ id, created_at, title, state, events }) => ({ id, created_at, title, state, last_event_id: events.length }));
    return json(res, 200, list);
  }
  if (p === '/api/sessions' && req.method === 'POST') {
    const s = { id: randomUUID(), created_at: new Date().toISOString(), title: '', state: 'idle', events: [], subs: new Set() };
    sessions.set(s.id, s);
    return json(res, 201, { id: s.id, created_at: s.created_at, title: '', state: 'idle', last_event_id: 0 });
  }
  if ((m = /^\/api\/sessions\/([0-9a-f-]{36})\/(stream|prompt|cancel)$/.exec(p))) {
    const s = sessions.get(m[1]);
    if (!s) return json(res, 404, { error: 'no such session' });
    if (m[2] === 'stream') {
      const after = Number(req.headers['last-event-id'] ?? url.searchParams.get('last_event_id') ?? 0);
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache', 'X-Accel-Buffering': 'no' });
      res.write(': hello\n\n');
      for (const ev of s.events) if (ev.id > after) write(res, ev);
      s.subs.add(res);
      req.on('close', () => s.subs.delete(res));
      return;
    }
    if (m[2] === 'prompt') {
      const b = await body(req);
      if (!b || typeof b.text !== 'string' || b.text.trim() === '') return json(res, 400, { error: 'empty prompt' });
      if (s.state === 'running') return json(res, 409, { error: 'a turn is already running' });
      playTurn(s, b.text);
      return json(res, 202, { ok: true });
    }
    if (s.state !== 'running') return json(res, 409, { error: 'nothing running' });
    s.cancelled = true;
    return json(res, 202, { ok: true });
  }
  if ((m = /^\/api\/sessions\/([0-9a-f-]{36})\/approvals\/([0-9a-f-]{36})$/.exec(p)) && req.method === 'POST') {
    const a = approvals.get(m[2]);
    const b = await body(req);
    if (!a) return json(res, 404, { error: 'no such approval' });
    if (a.state !== 'pending') return json(res, 409, { error: 'already resolved' });
    a.state = b?.approve === true ? 'approved' : 'denied';
    append(a.session, 'approval', { approval_id: m[2], verb: a.verb, state: a.state });
    const s = a.session;
    if (a.state === 'approved') {
      const r = runVerb(a.verb);
      append(s, 'verb', { verb: a.verb, actor: 'agent', exit_code: r.exit_code, output: r.output, duration_ms: r.duration_ms });
      append(s, 'tool_result', { tool_use_id: 'tpve', output: r.output, is_error: false });
    } else {
      append(s, 'tool_result', { tool_use_id: 'tpve', output: 'pve: reset denied by the operator', is_error: true });
    }
    append(s, 'text', { delta: a.state === 'approved' ? 'The VM was reset.' : 'Understood: no reset.' });
    append(s, 'result', { subtype: 'success', is_error: false, text: '', duration_ms: 900, num_turns: 2, total_cost_usd: 0.002 });
    append(s, 'done', { exit_code: 0, outcome: 'success', duration_ms: 950 });
    s.state = 'idle';
    return json(res, 200, { state: a.state });
  }
  if (p === '/api/vm' && req.method === 'GET') {
    // The stand-in has no keyholder: it says presence is off, as one run
    // with BREAKGLASS_PRESENCE=off would.
    return json(res, 200, { vmid: 102, presence: 'off', verbs: VERBS.map(([name, mutating]) => ({ name, mutating })) });
  }
  if ((m = /^\/api\/vm\/([a-z]+)$/.exec(p)) && req.method === 'POST') {
    if (!VERBS.some(([n]) => n === m[1])) return json(res, 400, { error: 'unknown verb' });
    const b = await body(req);
    const r = runVerb(m[1]);
    const s = b?.session_id ? sessions.get(b.session_id) : null;
    if (s) append(s, 'verb', { verb: m[1], actor: 'operator', exit_code: r.exit_code, output: r.output, duration_ms: r.duration_ms });
    return json(res, 200, r);
  }
  if (p.startsWith('/api/')) return json(res, 404, { error: 'not found' });
  // static files
  const rel = p === '/' ? 'index.html' : normalize(p).replace(/^\/+/, '');
  const file = join(dist, rel);
  if (!file.startsWith(dist) || !existsSync(file) || statSync(file).isDirectory()) {
    res.writeHead(404);
    return res.end('not found');
  }
  res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream', 'Cache-Control': rel === 'index.html' ? 'no-cache' : 'public, max-age=31536000, immutable' });
  res.end(readFileSync(file));
});

/** start listens on 127.0.0.1 and resolves to the base URL. */
export function start(port = 0) {
  return new Promise((resolve) => {
    server.listen(port, '127.0.0.1', () => resolve({ url: `http://127.0.0.1:${server.address().port}`, close: () => { server.closeAllConnections(); server.close(); } }));
  });
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { url } = await start(Number(process.argv[2] ?? 8088));
  console.log(`stand-in listening on ${url}`);
}
