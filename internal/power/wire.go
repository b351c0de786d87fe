package power

import "breakglass/internal/ipc"

// The bodies of the verb routes. The error body, its codes, the turn
// token's header and the agent endpoint's path are package wire's (shared
// with the `pve` command, package pvecmd).

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
