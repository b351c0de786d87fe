// Package apidouble is a scripted stand-in for the Anthropic Messages API,
// served on a loopback port, so tests can run the real claude CLI with no
// network: ANTHROPIC_BASE_URL points at Server.URL.
//
// It owns the script (a list of assistant turns: streamed text, tool_use
// blocks, delays and HTTP errors), the streaming (SSE) answers of
// POST /v1/messages, and a record of every request body so tests can check
// what the CLI sent (earlier messages on --resume, tool results).
//
// What claude 2.1.328 calls (TestRealCLIEndpoints): in -p mode with
// CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1, only streaming
// POST /v1/messages?beta=true, one per model call; the request after a
// tool_use carries the tool_result in its last user message, and a
// --resume request carries the whole earlier conversation. Anything else is
// recorded and answered harmlessly (count_tokens: a fixed count; HEAD and
// GET /: 200; other paths: a 404 JSON error). When the script is exhausted
// (or the next turn's When does not hold), a streaming request gets
// Config.Fallback, by default a 400 invalid_request_error whose message is
// ExhaustedMessage: claude does not retry a 400, so a test whose script ran
// short ends at once with that text in an error event.
//
// It must never listen on anything but 127.0.0.1, never reach the real API,
// and never leave a goroutine running after Close.
package apidouble
