package claude

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"breakglass/internal/event"
)

// LineKind classifies one stdout line of claude, for the
// breakglass_stream_lines_total{kind} metric.
type LineKind string

// Line kinds.
const (
	// LineKnown is a JSON line of a type the translator understands (it may
	// yield no event, e.g. message_stop).
	LineKnown LineKind = "known"
	// LineUnknown is a JSON object of a type or subtype the translator does
	// not know; it is ignored.
	LineUnknown LineKind = "unknown"
	// LineInvalid is a line that is not a JSON object.
	LineInvalid LineKind = "invalid"
)

// MaxToolOutput caps a tool_result's output in an event; longer output is
// cut on a UTF-8 boundary and ends with TruncatedMarker.
const MaxToolOutput = 64 << 10

// TruncatedMarker ends a tool output that was cut at MaxToolOutput.
const TruncatedMarker = "\n[truncated]"

// interruptedText is what claude writes as the user's text when a turn is
// interrupted by SIGINT; it is not chat text.
const interruptedText = "[Request interrupted by user]"

// syntheticModel marks an assistant message claude made up itself, such as
// the text of an API failure.
const syntheticModel = "<synthetic>"

// Translator turns claude's stream-json lines (`-p --output-format
// stream-json --verbose --include-partial-messages`) into transcript events,
// one line at a time, and hands back what else a line means as typed
// signals (Translated), so nobody has to sniff the events' JSON. It holds
// the state of one turn: create one per turn. It is not safe for
// concurrent use. It never panics on input.
type Translator struct {
	// streamed holds, in order, the text blocks of the current API message
	// that already went out as deltas and whose complete `assistant` copy
	// has not arrived yet: that copy must not be emitted again.
	streamed []int
	// textBlocks marks the indexes of text blocks of the current API
	// message (content_block_start with type text).
	textBlocks map[int]bool
}

// NewTranslator returns a Translator for one turn.
func NewTranslator() *Translator {
	return &Translator{textBlocks: map[int]bool{}}
}

// Translated is what one line meant: its kind, its events, and the
// signals the turn's state machine acts on.
type Translated struct {
	// Kind classifies the line (the breakglass_stream_lines_total label).
	Kind LineKind
	// Events are the transcript events of the line, in order.
	Events []event.Event
	// Init: the line was system/init (claude started the conversation).
	Init bool
	// Answered: the line shows the API answered (a stream event or a
	// complete message); a retry watchdog starts again.
	Answered bool
	// Retry is set when claude is retrying an API call (system/api_retry).
	Retry *Retry
	// Result is set on a result line.
	Result *event.ResultData
	// Control is set on a control_request line: claude waits for its
	// answer on stdin.
	Control *Control
	// CancelRequest is the request_id of a control_cancel_request: claude
	// no longer waits for that answer.
	CancelRequest string
}

// Control is one control request of claude.
type Control struct {
	// RequestID is echoed in the answer.
	RequestID string
	// Subtype is the request's kind; only can_use_tool is served.
	Subtype string
	// Permission is set for can_use_tool.
	Permission *PermissionRequest
}

// Retry is one API retry claude announced.
type Retry struct {
	Attempt int
	// Error is the failure being retried, in a few words.
	Error string
}

// The typed shapes of the lines this translator reads. Fields it does not
// need are not decoded.
type (
	line struct {
		Type    string       `json:"type"`
		Subtype string       `json:"subtype"`
		Event   *streamEvent `json:"event"`
		Message *message     `json:"message"`

		// system/init (session_id is on every line; model and tools only
		// on init)
		SessionID string   `json:"session_id"`
		Model     string   `json:"model"`
		Tools     []string `json:"tools"`
		// system/status
		Status string `json:"status"`
		// system/api_retry
		Attempt      int             `json:"attempt"`
		MaxRetries   int             `json:"max_retries"`
		RetryDelayMS float64         `json:"retry_delay_ms"`
		ErrorStatus  json.RawMessage `json:"error_status"`
		Error        json.RawMessage `json:"error"`
		// result
		IsError      bool     `json:"is_error"`
		Result       string   `json:"result"`
		DurationMS   float64  `json:"duration_ms"`
		NumTurns     int      `json:"num_turns"`
		TotalCostUSD float64  `json:"total_cost_usd"`
		Errors       []string `json:"errors"`
		// control_request, control_cancel_request
		RequestID string          `json:"request_id"`
		Request   *controlRequest `json:"request"`
	}

	controlRequest struct {
		Subtype     string          `json:"subtype"`
		ToolName    string          `json:"tool_name"`
		Input       json.RawMessage `json:"input"`
		Description string          `json:"description"`
	}

	streamEvent struct {
		Type         string `json:"type"`
		Index        int    `json:"index"`
		ContentBlock struct {
			Type string `json:"type"`
		} `json:"content_block"`
		Delta struct {
			Type string `json:"type"`
			Text string `json:"text"`
		} `json:"delta"`
	}

	message struct {
		Model   string `json:"model"`
		Content blocks `json:"content"`
	}

	block struct {
		Type      string          `json:"type"`
		Text      string          `json:"text"`
		ID        string          `json:"id"`
		Name      string          `json:"name"`
		Input     json.RawMessage `json:"input"`
		ToolUseID string          `json:"tool_use_id"`
		Content   json.RawMessage `json:"content"`
		IsError   bool            `json:"is_error"`
	}
)

// Line translates one line (without its newline).
func (t *Translator) Line(b []byte) Translated {
	b = bytes.TrimSpace(b)
	var f rawFields
	if !scanObject(b, &f) {
		return Translated{Kind: LineInvalid}
	}
	var l line
	if !decodeLine(&f, &l) {
		// A JSON object whose fields have unexpected shapes is a line of
		// a kind this translator does not know, not garbage.
		return Translated{Kind: LineUnknown}
	}
	return t.typed(&l)
}

func (t *Translator) typed(l *line) Translated {
	var tr Translated
	switch l.Type {
	case "system":
		tr.Events, tr.Kind = t.system(l)
		known := tr.Kind == LineKnown
		tr.Init = known && l.Subtype == "init"
		if known && l.Subtype == "api_retry" {
			tr.Retry = &Retry{Attempt: l.Attempt, Error: retryError(l.ErrorStatus, l.Error)}
		}
	case "stream_event":
		tr.Answered = true
		tr.Events, tr.Kind = t.streamEvent(l.Event)
	case "assistant":
		tr.Answered = true
		tr.Events, tr.Kind = t.assistant(l.Message)
	case "user":
		tr.Events, tr.Kind = t.user(l.Message)
	case "result":
		tr.Result, tr.Events = resultLine(l)
		tr.Kind = LineKnown
	case "rate_limit_event":
		tr.Kind = LineKnown
	case "control_request":
		tr.Control, tr.Kind = controlLine(l)
	case "control_cancel_request":
		tr.CancelRequest, tr.Kind = l.RequestID, LineKnown
		if l.RequestID == "" {
			tr.Kind = LineUnknown
		}
	default:
		tr.Kind = LineUnknown
	}
	return tr
}

func (t *Translator) system(l *line) ([]event.Event, LineKind) {
	switch l.Subtype {
	case "init":
		tools := l.Tools
		if tools == nil {
			tools = []string{}
		}
		return []event.Event{event.New(event.Session, event.SessionData{SessionID: l.SessionID, Model: l.Model, Tools: tools})}, LineKnown
	case "status":
		if event.State(l.Status) == event.StateRequesting {
			return []event.Event{event.New(event.Status, event.StatusData{State: event.StateRequesting})}, LineKnown
		}
		return nil, LineKnown
	case "api_retry":
		return []event.Event{event.New(event.Status, event.StatusData{
			State:      event.StateRetrying,
			Attempt:    l.Attempt,
			MaxRetries: l.MaxRetries,
			RetryInMS:  int64(l.RetryDelayMS),
			Error:      retryError(l.ErrorStatus, l.Error),
		})}, LineKnown
	}
	return nil, LineUnknown
}

// retryError renders an api_retry's error and error_status (either may be
// a string, a number, null or an object) in a few words.
func retryError(status, msg json.RawMessage) string {
	s, m := scalar(status), scalar(msg)
	switch {
	case s != "" && m != "":
		return s + " " + m
	case s != "":
		return s
	}
	return m
}

// scalar renders a JSON string or number as text; anything else is compact
// JSON, null is empty.
func scalar(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return ""
	}
	return capString(buf.String(), 512)
}

func (t *Translator) streamEvent(e *streamEvent) ([]event.Event, LineKind) {
	if e == nil {
		return nil, LineUnknown
	}
	switch e.Type {
	case "message_start":
		// A new API message: block indexes start again.
		t.streamed = t.streamed[:0]
		clear(t.textBlocks)
	case "content_block_start":
		if e.ContentBlock.Type == "text" {
			t.textBlocks[e.Index] = true
		}
	case "content_block_delta":
		if e.Delta.Type != "text_delta" || e.Delta.Text == "" {
			return nil, LineKnown // thinking, signature and tool input deltas are not chat text
		}
		if !t.textBlocks[e.Index] {
			t.textBlocks[e.Index] = true
		}
		if !t.isStreamed(e.Index) {
			t.streamed = append(t.streamed, e.Index)
		}
		return []event.Event{event.New(event.Text, event.TextData{Delta: e.Delta.Text})}, LineKnown
	case "content_block_stop", "message_delta", "message_stop", "ping", "error":
	default:
		return nil, LineUnknown
	}
	return nil, LineKnown
}

func (t *Translator) isStreamed(index int) bool {
	for _, i := range t.streamed {
		if i == index {
			return true
		}
	}
	return false
}

func (t *Translator) assistant(m *message) ([]event.Event, LineKind) {
	if m == nil {
		return nil, LineUnknown
	}
	var out []event.Event
	for _, b := range m.Content {
		switch b.Type {
		case "text":
			if m.Model == syntheticModel {
				if b.Text != "" {
					out = append(out, event.New(event.Error, event.ErrorData{Message: b.Text}))
				}
				continue
			}
			if len(t.streamed) > 0 {
				// Its deltas already went out: the complete copy is dropped.
				t.streamed = t.streamed[1:]
				continue
			}
			if b.Text != "" {
				out = append(out, event.New(event.Text, event.TextData{Delta: b.Text}))
			}
		case "tool_use":
			out = append(out, event.New(event.Tool, event.ToolData{ToolUseID: b.ID, Name: b.Name, Input: toolInput(b.Name, b.Input)}))
		}
	}
	return out, LineKnown
}

// controlLine reads a control_request. One without a request_id cannot be
// answered: it is an unknown line.
func controlLine(l *line) (*Control, LineKind) {
	if l.RequestID == "" || l.Request == nil {
		return nil, LineUnknown
	}
	c := &Control{RequestID: l.RequestID, Subtype: l.Request.Subtype}
	if c.Subtype == "can_use_tool" {
		in := bytes.TrimSpace(l.Request.Input)
		if len(in) == 0 || in[0] != '{' {
			in = json.RawMessage("{}")
		}
		c.Permission = &PermissionRequest{
			RequestID:   l.RequestID,
			Tool:        l.Request.ToolName,
			Input:       in,
			Display:     toolInput(l.Request.ToolName, in),
			Description: capString(l.Request.Description, 1024),
		}
	}
	return c, LineKnown
}

// toolInput is what the operator sees of a tool call: the command for Bash,
// compact JSON otherwise.
func toolInput(name string, raw json.RawMessage) string {
	if name == "Bash" {
		var in struct {
			Command *string `json:"command"`
		}
		if json.Unmarshal(raw, &in) == nil && in.Command != nil {
			return *in.Command
		}
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "{}"
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil {
		return "{}"
	}
	return capString(buf.String(), MaxToolOutput)
}

func (t *Translator) user(m *message) ([]event.Event, LineKind) {
	if m == nil {
		return nil, LineUnknown
	}
	var out []event.Event
	for _, b := range m.Content {
		if b.Type != "tool_result" {
			continue // the prompt itself, or interruptedText: not chat text
		}
		out = append(out, event.New(event.ToolResult, event.ToolResultData{
			ToolUseID: b.ToolUseID,
			Output:    capOutput(contentText(b.Content)),
			IsError:   b.IsError,
		}))
	}
	return out, LineKnown
}

// resultLine reads a result line: its data and its events.
func resultLine(l *line) (*event.ResultData, []event.Event) {
	rd := event.ResultData{
		Subtype:      l.Subtype,
		IsError:      l.IsError,
		Text:         l.Result,
		DurationMS:   int64(l.DurationMS),
		NumTurns:     l.NumTurns,
		TotalCostUSD: l.TotalCostUSD,
	}
	out := []event.Event{event.New(event.Result, rd)}
	if l.IsError {
		out = append(out, event.New(event.Error, event.ErrorData{Message: resultError(l)}))
	}
	return &rd, out
}

// resultError words a failed result for the operator.
func resultError(l *line) string {
	msg := strings.TrimSpace(l.Result)
	if msg == "" && len(l.Errors) > 0 {
		msg = strings.Join(l.Errors, "; ")
	}
	if msg == "" {
		msg = "no details given"
	}
	sub := l.Subtype
	if sub == "" {
		sub = "error"
	}
	return capString(fmt.Sprintf("claude ended the turn with an error (%s): %s", sub, msg), 4096)
}

// blocks is a message's content: a list of blocks, or a string (one text
// block). Content of any other shape holds no blocks.
type blocks []block

// UnmarshalJSON never fails: content of an unexpected shape is no content.
func (bs *blocks) UnmarshalJSON(raw []byte) error {
	*bs = parseBlocks(raw)
	return nil
}

// parseBlocks reads a content field that is a string (one text block) or a
// list of blocks.
func parseBlocks(raw json.RawMessage) []block {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		return []block{{Type: "text", Text: s}}
	}
	var bs []block
	if json.Unmarshal(raw, &bs) != nil {
		return nil
	}
	return bs
}

// contentText renders a tool_result's content (a string or a list of
// blocks) as text.
func contentText(raw json.RawMessage) string {
	var sb strings.Builder
	for i, b := range parseBlocks(raw) {
		if i > 0 {
			sb.WriteByte('\n')
		}
		switch b.Type {
		case "text":
			sb.WriteString(b.Text)
		default:
			sb.WriteString("[" + b.Type + "]")
		}
	}
	return sb.String()
}

// capOutput caps a tool's output at MaxToolOutput, marking the cut.
func capOutput(s string) string {
	if len(s) <= MaxToolOutput {
		return s
	}
	return cutUTF8(s, MaxToolOutput-len(TruncatedMarker)) + TruncatedMarker
}

// capString cuts s to at most n bytes on a UTF-8 boundary.
func capString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return cutUTF8(s, n)
}

func cutUTF8(s string, n int) string {
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
