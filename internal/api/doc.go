// Package api is the web's HTTP surface (docs/web.md): the
// routes of the operator's page and JSON API, their fail-closed
// authentication and same-origin check, the session event stream (SSE), the
// page itself, the open health probes, and the /metrics handler served on
// the separate metrics listener. It mounts the routes other packages serve
// (wire.Route: the power verbs, the agent's endpoint, the push
// subscriptions), and every answer goes through package wire: one JSON
// writer, one error body with a machine-readable code.
//
// It must never serve a route other than /healthz, /readyz (and routes a
// caller mounts as open, such as the agent's token-checked endpoint) without
// an authenticated operator; never accept a turn token on an operator's
// route; never write an error body without a code; never accept the bearer token when none is
// configured, nor an empty or repeated identity header, nor that header from
// a peer outside the trusted proxies (none by default: the header is off); never change state on GET; never use a
// session id that is not a UUID v4; and never serve /metrics on the
// operator's listener.
package api
