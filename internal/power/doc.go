// Package power is the web's side of the power verbs (docs/web.md): the
// handlers of the operator's /api/vm routes and of the agent's endpoint
// behind the `pve` command (Routes, mounted by package api, which
// authenticates the operator), the approval policy for the agent's mutating
// verbs (BREAKGLASS_AGENT_MUTATING_VERBS), the check of the agent's per-turn
// tokens (package turntoken issues them), the `verb` and `approval`
// transcript events, and the verb metrics. Every verb goes on to the
// keyholder over its socket; this package holds no key and speaks no SSH.
//
// It must never let a request reach the keyholder before its verb passed
// verbs.Parse and its caller was authenticated; never accept the operator's
// identity on the agent's endpoint; never let an agent's mutating verb run
// under `approve` without the operator's answer, nor at all under `deny`;
// never use a session id that is not a UUID v4; never log or echo a turn
// token.
package power
