package claude

import (
	"context"
	"errors"

	"breakglass/internal/event"
)

// Turn describes one claude invocation.
type Turn struct {
	// SessionID is the session's UUID v4; it is also claude's session id.
	SessionID string
	// Prompt is the operator's text, the first user message on claude's
	// stdin (stream-json input).
	Prompt string
	// Resume selects --resume (a later turn) over --session-id (the first).
	Resume bool
	// Dir is the turn's working directory: the session's folder.
	Dir string
	// Env holds extra KEY=value entries for this turn only (e.g. the
	// per-turn token of the agent's `pve` command), added after the
	// allowlisted environment.
	Env []string
	// Permit answers claude's permission requests (control_request
	// can_use_tool) by the session's mode at that moment, asking the
	// operator in careful mode. It may block until ctx ends; it must then
	// return at once. Nil denies every request.
	Permit func(ctx context.Context, req PermissionRequest) PermissionAnswer
	// Input, if set, carries steering messages into the turn; the runner
	// closes it when claude's stdin closes.
	Input *Input
}

// Outcome is how a turn ended. The caller turns it into the `done` event.
type Outcome struct {
	// Outcome is one of event.Outcomes().
	Outcome event.Outcome
	// ExitCode is claude's exit status, or -1 when it did not exit on its own.
	ExitCode int
}

// ErrCancelled is the context cause that marks a turn cancelled by the
// operator (context.WithCancelCause). A turn whose context ends for any other
// reason, such as its deadline, ends with outcome timeout.
var ErrCancelled = errors.New("turn cancelled by the operator")
