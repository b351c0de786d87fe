package apidouble

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
)

// Request is one request the double received, as recorded.
type Request struct {
	// Seq numbers requests from 1 in arrival order.
	Seq      int
	Method   string
	Path     string
	RawQuery string
	Header   http.Header
	// Body is the raw request body (bounded by maxBody).
	Body []byte
	// Parsed from a /v1/messages body; empty for other paths or bad JSON.
	Model    string
	Stream   bool
	Messages []Message
	// Scripted is true when a scripted turn answered this request.
	Scripted bool
}

// Message is one entry of a Messages API request's `messages`.
type Message struct {
	Role    string
	Content []Block
}

// Block is one content block of a message. Text holds a text block's text;
// for a tool_result it holds the result's text (joined when the content is
// a list of blocks).
type Block struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ID        string          `json:"id,omitempty"`
	Name      string          `json:"name,omitempty"`
	Input     json.RawMessage `json:"input,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
}

type wireRequest struct {
	Model    string        `json:"model"`
	Stream   bool          `json:"stream"`
	Messages []wireMessage `json:"messages"`
}

type wireMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

type wireBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text"`
	ID        string          `json:"id"`
	Name      string          `json:"name"`
	Input     json.RawMessage `json:"input"`
	ToolUseID string          `json:"tool_use_id"`
	IsError   bool            `json:"is_error"`
	Content   json.RawMessage `json:"content"`
}

// parseMessages fills the Messages API fields of r from its body. A body
// that does not decode leaves them empty.
func (r *Request) parseMessages() {
	var w wireRequest
	if err := json.Unmarshal(r.Body, &w); err != nil {
		return
	}
	r.Model, r.Stream = w.Model, w.Stream
	for _, m := range w.Messages {
		r.Messages = append(r.Messages, Message{Role: m.Role, Content: parseContent(m.Content)})
	}
}

// parseContent reads a content field that is either a string or a list of
// blocks.
func parseContent(raw json.RawMessage) []Block {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return nil
		}
		return []Block{{Type: "text", Text: s}}
	}
	var ws []wireBlock
	if json.Unmarshal(raw, &ws) != nil {
		return nil
	}
	out := make([]Block, 0, len(ws))
	for _, w := range ws {
		b := Block{Type: w.Type, Text: w.Text, ID: w.ID, Name: w.Name, Input: w.Input, ToolUseID: w.ToolUseID, IsError: w.IsError}
		if w.Type == "tool_result" {
			b.Text = joinText(parseContent(w.Content))
		}
		out = append(out, b)
	}
	return out
}

func joinText(bs []Block) string {
	var sb strings.Builder
	for _, b := range bs {
		sb.WriteString(b.Text)
	}
	return sb.String()
}

// IsMessages reports whether r is a POST to the Messages endpoint.
func (r Request) IsMessages() bool {
	return r.Method == http.MethodPost && r.Path == "/v1/messages"
}

// LastUser returns the last message with role user, or a zero Message.
func (r Request) LastUser() Message {
	for i := len(r.Messages) - 1; i >= 0; i-- {
		if r.Messages[i].Role == "user" {
			return r.Messages[i]
		}
	}
	return Message{}
}

// HasToolResult reports whether the last user message carries a
// tool_result block.
func (r Request) HasToolResult() bool {
	return len(r.ToolResults()) > 0
}

// ToolResults returns the tool_result blocks of the last user message.
func (r Request) ToolResults() []Block {
	var out []Block
	for _, b := range r.LastUser().Content {
		if b.Type == "tool_result" {
			out = append(out, b)
		}
	}
	return out
}

// UserTexts returns the text of every text block sent with role user, in
// order: the operator's prompts as the CLI forwards them (plus any text the
// CLI adds, such as reminders).
func (r Request) UserTexts() []string {
	var out []string
	for _, m := range r.Messages {
		if m.Role != "user" {
			continue
		}
		for _, b := range m.Content {
			if b.Type == "text" {
				out = append(out, b.Text)
			}
		}
	}
	return out
}

// AssistantTexts returns the text of every text block sent with role
// assistant: on --resume, the earlier answers.
func (r Request) AssistantTexts() []string {
	var out []string
	for _, m := range r.Messages {
		if m.Role != "assistant" {
			continue
		}
		for _, b := range m.Content {
			if b.Type == "text" {
				out = append(out, b.Text)
			}
		}
	}
	return out
}
