package apidouble

import (
	"encoding/json"
	"strings"
	"time"
)

// Turn is one scripted assistant answer: the steps streamed back for one
// POST /v1/messages request.
type Turn struct {
	// When, if set, must hold for the request this turn answers. A request
	// that does not satisfy the next turn's When gets the fallback answer and
	// leaves the turn in place (see Config.Fallback). Nil matches any request.
	When func(Request) bool
	// Steps are streamed in order.
	Steps []Step
}

// T builds a Turn with no condition.
func T(steps ...Step) Turn { return Turn{Steps: steps} }

// AfterToolResult builds a Turn that only answers a request whose last user
// message carries a tool_result block: the request the CLI sends once it has
// run the tool of the previous turn.
func AfterToolResult(steps ...Step) Turn {
	return Turn{When: Request.HasToolResult, Steps: steps}
}

type stepKind int

const (
	stepText stepKind = iota + 1
	stepToolUse
	stepDelay
	stepStatus
	stepExhausted
)

// Step is one part of a scripted turn. Build it with Text, TextDeltas,
// ToolUse, Bash, Delay or Status.
type Step struct {
	kind   stepKind
	deltas []string
	name   string
	input  json.RawMessage
	delay  time.Duration
	status int
	every  time.Duration
}

// Text streams s as one text block, split into several text_delta events
// (one per word, spaces kept), so joined deltas equal s.
func Text(s string) Step {
	return Step{kind: stepText, deltas: splitWords(s)}
}

// TextDeltas streams one text block whose text_delta events are exactly
// pieces.
func TextDeltas(pieces ...string) Step {
	return Step{kind: stepText, deltas: pieces}
}

// ToolUse streams a tool_use block calling name with input (marshalled to
// JSON; it must marshal, or the step carries an empty object).
func ToolUse(name string, input any) Step {
	b, err := json.Marshal(input)
	if err != nil || len(b) == 0 || b[0] != '{' {
		b = []byte("{}")
	}
	return Step{kind: stepToolUse, name: name, input: b}
}

// Bash is ToolUse("Bash", {"command": command}).
func Bash(command string) Step {
	return ToolUse("Bash", map[string]string{"command": command})
}

// Delay waits d. Before anything has been written it delays the response
// headers; later it pauses the stream. It ends early when the client goes
// away or the server closes.
func Delay(d time.Duration) Step {
	return Step{kind: stepDelay, delay: d}
}

// Status answers with HTTP status code and an Anthropic-shaped JSON error
// (529 overloaded_error, 500 api_error, 429 rate_limit_error, …). If the
// stream has already started, an SSE error event is sent instead. The
// steps after it are not played.
func Status(code int) Step {
	return Step{kind: stepStatus, status: code}
}

// Every returns a copy of a text or tool step that pauses d before each of
// its deltas (cancellable like Delay).
func (s Step) Every(d time.Duration) Step {
	s.every = d
	return s
}

// splitWords cuts s after each run of spaces, keeping every byte.
func splitWords(s string) []string {
	if s == "" {
		return []string{""}
	}
	var out []string
	for s != "" {
		i := strings.IndexByte(s, ' ')
		if i < 0 {
			out = append(out, s)
			break
		}
		j := i
		for j < len(s) && s[j] == ' ' {
			j++
		}
		out = append(out, s[:j])
		s = s[j:]
	}
	return out
}
