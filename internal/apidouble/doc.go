// Package apidouble is a scripted stand-in for the Anthropic Messages API,
// served on a loopback port, so tests can run the real claude CLI with no
// network: ANTHROPIC_BASE_URL points at Server.URL.
//
// It owns the script (a list of assistant turns: streamed text, tool_use
// blocks, delays and HTTP errors), the streaming (SSE) answers of
// POST /v1/messages, and a record of every request body so tests can check
// what the CLI sent (earlier messages on --resume, tool results).
//
// It must never listen on anything but 127.0.0.1, never reach the real API,
// and never leave a goroutine running after Close.
package apidouble
