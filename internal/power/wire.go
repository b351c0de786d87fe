package power

import "breakglass/internal/ipc"

// The agent endpoint's wire contract, shared with the `pve` command
// (package pvecmd).

// TokenHeader carries the per-turn token on the agent's endpoint. It is the
// only credential that endpoint accepts.
const TokenHeader = "X-Breakglass-Turn-Token"

// AgentVerbPrefix is the agent endpoint's path; the verb follows it:
// POST /api/agent/verbs/{verb}.
const AgentVerbPrefix = "/api/agent/verbs/"

// Code says in one word why a verb request did not run, in every error body
// of this package, so the `pve` command can pick its exit status without
// parsing prose.
type Code string

// The codes.
const (
	CodeToken          Code = "token_rejected"   // 401: no token, a dead one, or another session's
	CodeUnauthorized   Code = "unauthorized"     // 401: no operator identity
	CodeForbidden      Code = "forbidden"        // 403: a turn token on an operator route
	CodeInvalidVerb    Code = "invalid_verb"     // 400: not one of the verbs
	CodeBadArgs        Code = "bad_args"         // 400: args on a verb without them, or an argv outside the limits
	CodeBadRequest     Code = "bad_request"      // 400: malformed body or session id
	CodeRefused        Code = "refused"          // 403: policy deny
	CodeDenied         Code = "denied"           // 403: the operator denied the approval
	CodeExpired        Code = "expired"          // 403: nobody answered the approval in time
	CodeTooManyPending Code = "too_many_pending" // 429: the session has too many approvals waiting
	CodeBusy           Code = "busy"             // 409: a mutating verb is already running
	CodeTimeout        Code = "timeout"          // 504: the verb timed out
	CodeSSH            Code = "ssh_failed"       // 502: the keyholder could not run it over SSH
	CodeKeyholderDown  Code = "keyholder_down"   // 503: the keyholder's socket did not answer
	CodeNotFound       Code = "not_found"        // 404: no such approval
	CodeResolved       Code = "already_resolved" // 409: approval already resolved
	CodeError          Code = "error"            // anything else
)

// ErrorBody is the JSON of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  Code   `json:"code"`
	// Reason is the keyholder's presence refusal code (with CodePresence).
	Reason string `json:"reason,omitempty"`
}

// RunRequest is the optional body of POST /api/vm/{verb} and of the agent's
// endpoint. On the agent's endpoint a session id, when given, must be the
// token's own.
type RunRequest struct {
	SessionID string `json:"session_id,omitempty"`
	// Args is guest-exec's argv; every other verb refuses it.
	Args ipc.Argv `json:"args,omitempty"`
	// Presence is the operator's assertion over a challenge for this verb
	// (the operator's route only; the agent has none).
	Presence *ipc.Presence `json:"presence,omitempty"`
}

// ApprovalRequest is the body of POST /api/sessions/{id}/approvals/{aid}.
type ApprovalRequest struct {
	// Approve is required: true runs the verb, false denies it.
	Approve *bool `json:"approve"`
	// Presence is the operator's assertion over the approval's challenge;
	// approving needs it when the keyholder requires presence.
	Presence *ipc.Presence `json:"presence,omitempty"`
}

// The environment of an agent's turn read by the `pve` command; TurnEnv
// builds it.
const (
	// EnvPVEURL is the web's base URL as the agent reaches it, e.g.
	// http://127.0.0.1:8080.
	EnvPVEURL = "BREAKGLASS_PVE_URL"
	// EnvPVEToken is the turn's token.
	EnvPVEToken = "BREAKGLASS_PVE_TOKEN"
	// EnvPVESession is the turn's session id; the web checks it is the
	// token's.
	EnvPVESession = "BREAKGLASS_PVE_SESSION"
	// EnvPVEWait is how many seconds `pve` waits for an answer.
	EnvPVEWait = "BREAKGLASS_PVE_WAIT_SECONDS"
)
