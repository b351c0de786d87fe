// The suite against the stand-in server: fast feedback on the page alone.
import { suite } from './suite.mjs';
import { start } from './standin.mjs';

suite(async () => {
  const s = await start(0);
  return {
    url: s.url,
    close: s.close,
    prepare: async () => {}, // the stand-in plays the same turn for every prompt
    toolCommand: /ssh devvm uptime/,
    toolOutput: /load average/,
    mutatingCalls: async () => (await fetch(`${s.url}/__standin/calls`)).json(),
    cutStreams: async () => (await (await fetch(`${s.url}/__standin/cut`, { method: 'POST' })).json()).cut,
    requestApproval: (page, sid) => fetch(`${s.url}/__standin/approval?session=${sid}`, { method: 'POST' }),
  };
});
