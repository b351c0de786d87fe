package claude

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"

	"breakglass/internal/verbs"
)

// The operator in the loop (docs/operator-loop.md): every turn reads
// stream-json on stdin, so the web can answer the CLI's permission prompts
// (control_request can_use_tool) and deliver steering messages into a
// running turn. Only the web writes claude's stdin.

// Mode is a session's agent mode: how its tool calls that claude would ask
// permission for are answered.
type Mode string

// Agent modes.
const (
	// ModeAutopilot allows every tool call unasked.
	ModeAutopilot Mode = "autopilot"
	// ModeCareful asks the operator.
	ModeCareful Mode = "careful"
	// ModeReadOnly denies every such call with a message.
	ModeReadOnly Mode = "read-only"
)

// DefaultMode is the mode of a session that has none.
const DefaultMode = ModeCareful

// Modes lists every mode, in a fixed order.
func Modes() []Mode { return []Mode{ModeAutopilot, ModeCareful, ModeReadOnly} }

// Valid reports whether m is one of the modes.
func (m Mode) Valid() bool {
	switch m {
	case ModeAutopilot, ModeCareful, ModeReadOnly:
		return true
	}
	return false
}

// PermissionRequest is one can_use_tool control request of claude.
type PermissionRequest struct {
	// RequestID is claude's request_id (a UUID), echoed in the answer.
	RequestID string
	// Tool is the tool's name (Bash, Read, …).
	Tool string
	// Input is the tool's input exactly as claude sent it; an allow sends
	// it back unchanged.
	Input json.RawMessage
	// Display is what the operator reads: for Bash the command, compact
	// JSON otherwise.
	Display string
	// Description is claude's own description of the call, if any.
	Description string
	// Cwd is the folder claude runs in (the runner sets it).
	Cwd string
}

// PermissionAnswer is the answer to a PermissionRequest.
type PermissionAnswer struct {
	Allow bool
	// Message is what the agent reads when denied.
	Message string
}

// Verdict is what a mode decides about a request by itself.
type Verdict int

// Verdicts.
const (
	// VerdictAsk: the operator decides.
	VerdictAsk Verdict = iota
	// VerdictAllow: run it unasked.
	VerdictAllow
	// VerdictDeny: refuse it unasked.
	VerdictDeny
)

// ReadOnlyMessage is what the agent reads when read-only mode denies a
// tool call.
const ReadOnlyMessage = "The operator has set this session to read-only: this command was not run. Only commands that change nothing run here. Say what you would run and why, and let the operator decide."

// Decide is the mode's rule for one request, pure: an exact `pve <verb>`
// command line is allowed in every mode (the verb has its own approval),
// autopilot allows, read-only denies, and careful (or anything unknown)
// asks.
func Decide(mode Mode, req PermissionRequest) Verdict {
	if req.Tool == "Bash" && IsVerbCommand(req.Display) {
		return VerdictAllow
	}
	switch mode {
	case ModeAutopilot:
		return VerdictAllow
	case ModeReadOnly:
		return VerdictDeny
	}
	return VerdictAsk
}

// IsVerbCommand reports whether command is exactly `pve <verb>` for a verb
// of the table: no argument, no other word, no shell syntax.
func IsVerbCommand(command string) bool {
	name, ok := strings.CutPrefix(command, "pve ")
	if !ok {
		return false
	}
	_, err := verbs.Parse(name)
	return err == nil
}

// ErrInputClosed: the turn no longer reads input (its result came, or it
// ended); a steering message cannot be delivered into it.
var ErrInputClosed = errors.New("the turn no longer takes input")

// Input carries the operator's steering messages into a running turn: the
// runner writes each to claude's stdin as a user message. It is safe for
// concurrent use; Steer never blocks.
type Input struct {
	ready chan struct{}
	// mu protects the following.
	mu     sync.Mutex
	queue  []string
	closed bool
}

// NewInput returns an open Input.
func NewInput() *Input { return &Input{ready: make(chan struct{}, 1)} }

// Steer queues text for the running turn, or returns ErrInputClosed.
func (in *Input) Steer(text string) error {
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.closed {
		return ErrInputClosed
	}
	in.queue = append(in.queue, text)
	select {
	case in.ready <- struct{}{}:
	default:
	}
	return nil
}

// readyC signals that messages may be waiting; nil Input: never.
func (in *Input) readyC() <-chan struct{} {
	if in == nil {
		return nil
	}
	return in.ready
}

// take returns the queued messages.
func (in *Input) take() []string {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	q := in.queue
	in.queue = nil
	return q
}

// Close refuses every later Steer and returns what was still queued.
func (in *Input) Close() []string {
	if in == nil {
		return nil
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	in.closed = true
	q := in.queue
	in.queue = nil
	return q
}

// The lines the web writes on claude's stdin.
type (
	userLine struct {
		Type    string      `json:"type"`
		Message userMessage `json:"message"`
	}
	userMessage struct {
		Role    string `json:"role"`
		Content string `json:"content"`
	}
	controlResponseLine struct {
		Type     string          `json:"type"`
		Response controlResponse `json:"response"`
	}
	controlResponse struct {
		Subtype   string          `json:"subtype"`
		RequestID string          `json:"request_id"`
		Response  *permissionBody `json:"response,omitempty"`
		Error     string          `json:"error,omitempty"`
	}
	// permissionBody never carries updatedPermissions: no rule outlives
	// the answer (claude's permission_suggestions are never sent back).
	permissionBody struct {
		Behavior     string          `json:"behavior"`
		UpdatedInput json.RawMessage `json:"updatedInput,omitempty"`
		Message      string          `json:"message,omitempty"`
	}
)

// encodeUser is a user message line (the prompt, or a steering message).
func encodeUser(text string) []byte {
	return mustLine(userLine{Type: "user", Message: userMessage{Role: "user", Content: text}})
}

// encodePermission is the control_response line answering a permission
// request: allow with the unchanged input, or deny with the message.
func encodePermission(req PermissionRequest, a PermissionAnswer) []byte {
	body := &permissionBody{Behavior: "deny", Message: a.Message}
	if a.Allow {
		in := req.Input
		if len(in) == 0 {
			in = json.RawMessage("{}")
		}
		body = &permissionBody{Behavior: "allow", UpdatedInput: in}
	} else if body.Message == "" {
		body.Message = "The operator denied this command; it was not run."
	}
	return mustLine(controlResponseLine{Type: "control_response", Response: controlResponse{
		Subtype: "success", RequestID: req.RequestID, Response: body,
	}})
}

// encodeControlError is the control_response line refusing a control
// request the web does not serve.
func encodeControlError(requestID, msg string) []byte {
	return mustLine(controlResponseLine{Type: "control_response", Response: controlResponse{
		Subtype: "error", RequestID: requestID, Error: msg,
	}})
}

// mustLine marshals a plain struct (cannot fail) and adds the newline.
func mustLine(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("claude: marshal stdin line: " + err.Error())
	}
	return append(b, '\n')
}
