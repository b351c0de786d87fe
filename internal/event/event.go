package event

import (
	"encoding/json"
	"time"
)

// Type is an event's wire name (the SSE `event:` line).
type Type string

// The event vocabulary. Nothing else is written to a transcript.
const (
	Session    Type = "session"
	User       Type = "user"
	Status     Type = "status"
	Text       Type = "text"
	Tool       Type = "tool"
	ToolResult Type = "tool_result"
	Result     Type = "result"
	Verb       Type = "verb"
	Approval   Type = "approval"
	Permission Type = "permission"
	Error      Type = "error"
	Done       Type = "done"
)

// Types lists the event vocabulary in a fixed order (the UI's EVENT_TYPES
// is held to it by a test).
func Types() []Type {
	return []Type{Session, User, Status, Text, Tool, ToolResult, Result, Verb, Approval, Permission, Error, Done}
}

// Event is one entry of a session's append-only log. IDs start at 1 and grow
// by one per session.
type Event struct {
	ID   int64           `json:"id"`
	Type Type            `json:"event"`
	Time time.Time       `json:"time"`
	Data json.RawMessage `json:"data"`
}

// SessionData is the data of a session event (from claude's system/init).
type SessionData struct {
	SessionID string   `json:"session_id"`
	Model     string   `json:"model"`
	Tools     []string `json:"tools"`
}

// UserData is the operator's prompt, so every attached client sees it.
type UserData struct {
	Text  string `json:"text"`
	Actor string `json:"actor"`
	// Steer is set when the prompt was sent into a running turn.
	Steer bool `json:"steer,omitempty"`
}

// State is what claude is doing with the API, in a status event.
type State string

// Status states.
const (
	StateRequesting State = "requesting"
	StateRetrying   State = "retrying"
)

// StatusData reports that claude is calling the API or retrying it.
type StatusData struct {
	State      State  `json:"state"`
	Attempt    int    `json:"attempt,omitempty"`
	MaxRetries int    `json:"max_retries,omitempty"`
	RetryInMS  int64  `json:"retry_in_ms,omitempty"`
	Error      string `json:"error,omitempty"`
}

// TextData is a piece of the model's text as it streams.
type TextData struct {
	Delta string `json:"delta"`
}

// ToolData is a tool call. For Bash, Input is the command.
type ToolData struct {
	ToolUseID string `json:"tool_use_id"`
	Name      string `json:"name"`
	Input     string `json:"input"`
}

// ToolResultData is a tool's output, capped.
type ToolResultData struct {
	ToolUseID string `json:"tool_use_id"`
	Output    string `json:"output"`
	IsError   bool   `json:"is_error"`
}

// ResultData closes claude's side of a turn.
type ResultData struct {
	Subtype      string  `json:"subtype"`
	IsError      bool    `json:"is_error"`
	Text         string  `json:"text"`
	DurationMS   int64   `json:"duration_ms"`
	NumTurns     int     `json:"num_turns"`
	TotalCostUSD float64 `json:"total_cost_usd"`
}

// VerbData is a power verb run from the UI or by the agent.
type VerbData struct {
	Verb       string `json:"verb"`
	Actor      string `json:"actor"`
	ExitCode   *int   `json:"exit_code,omitempty"`
	Output     string `json:"output,omitempty"`
	DurationMS int64  `json:"duration_ms"`
	Error      string `json:"error,omitempty"`
	// Args is guest-exec's argv.
	Args []string `json:"args,omitempty"`
	// Image names the picture a screenshot left in the session
	// (GET /api/sessions/{id}/images/{image}); Output is then empty.
	Image string `json:"image,omitempty"`
}

// ApprovalState is where an agent's mutating verb stands with the operator.
type ApprovalState string

// Approval states.
const (
	ApprovalPending  ApprovalState = "pending"
	ApprovalApproved ApprovalState = "approved"
	ApprovalDenied   ApprovalState = "denied"
	ApprovalExpired  ApprovalState = "expired"
)

// ApprovalData is an agent's mutating verb waiting for, or resolved by, the
// operator.
type ApprovalData struct {
	ApprovalID string `json:"approval_id"`
	Verb       string `json:"verb"`
	// Args is guest-exec's exact argv: what the operator approves.
	Args  []string      `json:"args,omitempty"`
	State ApprovalState `json:"state"`
	// By names the operator who approved or denied (empty while pending
	// and on expiry).
	By string `json:"by,omitempty"`
}

// Permission states.
const (
	PermissionPending = "pending"
	PermissionAllowed = "allowed"
	PermissionDenied  = "denied"
	PermissionExpired = "expired"
)

// PermissionData is a tool call claude asked about, waiting for or
// resolved by the operator (docs/operator-loop.md). Every event of one
// request carries the same RequestID; its last says how it ended.
type PermissionData struct {
	RequestID string `json:"request_id"`
	Tool      string `json:"tool"`
	// Input is what the operator decides on: for Bash the whole command,
	// compact JSON otherwise.
	Input string `json:"input"`
	State string `json:"state"`
	// By is who decided: the operator's name, or the mode (read-only) or
	// "timeout".
	By string `json:"by,omitempty"`
	// Message is the operator's note to the agent, if any.
	Message string `json:"message,omitempty"`
	// Cwd is the folder the command runs in.
	Cwd string `json:"cwd,omitempty"`
	// Description is claude's own description of the call.
	Description string `json:"description,omitempty"`
}

// ErrorData says what went wrong, in words for the operator.
type ErrorData struct {
	Message string `json:"message"`
}

// Outcome is how a turn ended, carried by the done event.
type Outcome string

// Turn outcomes.
const (
	OutcomeSuccess   Outcome = "success"
	OutcomeError     Outcome = "error"
	OutcomeCancelled Outcome = "cancelled"
	OutcomeTimeout   Outcome = "timeout"
)

// Outcomes lists every outcome, in a fixed order.
func Outcomes() []Outcome {
	return []Outcome{OutcomeSuccess, OutcomeError, OutcomeCancelled, OutcomeTimeout}
}

// Valid reports whether o is one of the outcomes.
func (o Outcome) Valid() bool {
	switch o {
	case OutcomeSuccess, OutcomeError, OutcomeCancelled, OutcomeTimeout:
		return true
	}
	return false
}

// DoneData ends every turn, exactly once.
type DoneData struct {
	ExitCode   int     `json:"exit_code"`
	Outcome    Outcome `json:"outcome"`
	DurationMS int64   `json:"duration_ms"`
}

// New builds an unnumbered event from its data; the session log assigns the
// ID and Time when it appends it. Marshalling these plain structs cannot
// fail, so an error here is a programming error.
func New(t Type, data any) Event {
	b, err := json.Marshal(data)
	if err != nil {
		panic("event: marshal " + string(t) + ": " + err.Error())
	}
	return Event{Type: t, Data: b}
}
