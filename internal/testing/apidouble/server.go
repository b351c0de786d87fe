package apidouble

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// maxBody bounds a recorded request body.
const maxBody = 32 << 20

// ExhaustedMessage is the error message of the default fallback answer.
const ExhaustedMessage = "apidouble: no scripted turn left for this request"

// Config configures a Server. The zero value is usable: an empty script,
// every request answered with the fallback.
type Config struct {
	// Script is the list of turns, consumed in order by streaming
	// POST /v1/messages requests. More can be added with Push.
	Script []Turn
	// Fallback answers a streaming Messages request when the script is
	// exhausted or the next turn's When does not hold. Nil means HTTP 400
	// with an invalid_request_error whose message is ExhaustedMessage (the
	// CLI does not retry a 400, so the turn ends quickly with that text).
	Fallback *Turn
	// Model is the model name written in message_start; empty echoes the
	// request's model.
	Model string
	// Logger receives one line per request; nil discards.
	Logger hclog.Logger
}

// Server is a running double. It is safe for concurrent use.
type Server struct {
	cfg    Config
	log    hclog.Logger
	ln     net.Listener
	srv    *http.Server
	done   chan struct{}
	closed sync.Once
	wg     sync.WaitGroup

	// mu protects the following.
	mu       sync.Mutex
	script   []Turn
	requests []Request
	changed  chan struct{} // closed and replaced on every new request
	msgID    int
	isClosed bool
}

// New starts a Server on 127.0.0.1 with a free port.
func New(cfg Config) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Server{
		cfg:     cfg,
		log:     log.Named("apidouble"),
		ln:      ln,
		done:    make(chan struct{}),
		script:  append([]Turn(nil), cfg.Script...),
		changed: make(chan struct{}),
	}
	s.srv = &http.Server{
		Handler:           http.HandlerFunc(s.serve),
		ReadHeaderTimeout: 10 * time.Second,
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.srv.Serve(ln) // returns http.ErrServerClosed on Close
	}()
	return s, nil
}

// URL is the base URL for ANTHROPIC_BASE_URL, e.g. http://127.0.0.1:41234.
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Push appends turns to the script.
func (s *Server) Push(turns ...Turn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.script = append(s.script, turns...)
}

// Remaining is the number of scripted turns not yet played.
func (s *Server) Remaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.script)
}

// Requests returns a copy of every request received so far, in order.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// MessageRequests returns the POST /v1/messages requests received so far.
func (s *Server) MessageRequests() []Request {
	var out []Request
	for _, r := range s.Requests() {
		if r.IsMessages() {
			out = append(out, r)
		}
	}
	return out
}

// WaitMessages blocks until at least n POST /v1/messages requests have
// arrived (their answer may still be streaming), ctx ends, or the server
// closes.
func (s *Server) WaitMessages(ctx context.Context, n int) error {
	for {
		s.mu.Lock()
		count := 0
		for _, r := range s.requests {
			if r.IsMessages() {
				count++
			}
		}
		ch := s.changed
		s.mu.Unlock()
		if count >= n {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d messages requests (have %d): %w", n, count, ctx.Err())
		case <-s.done:
			return errors.New("wait for messages requests: server closed")
		}
	}
}

// Close stops the server, ends every answer in progress (delays included)
// and waits for all of its goroutines.
func (s *Server) Close() {
	s.closed.Do(func() {
		s.mu.Lock()
		s.isClosed = true
		s.mu.Unlock()
		close(s.done)
		_ = s.srv.Close()
	})
	s.wg.Wait()
}

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	// WARNING: wg.Add happens under mu and only while open, so it can never
	// race with the wg.Wait in Close (TestCloseEndsDelays guards this).
	s.mu.Lock()
	if s.isClosed {
		s.mu.Unlock()
		http.Error(w, "closed", http.StatusServiceUnavailable)
		return
	}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	body, _ := io.ReadAll(io.LimitReader(r.Body, maxBody))
	req := Request{
		Method:   r.Method,
		Path:     r.URL.Path,
		RawQuery: r.URL.RawQuery,
		Header:   r.Header.Clone(),
		Body:     body,
	}
	if req.IsMessages() {
		req.parseMessages()
	}
	turn, scripted := s.record(&req)
	s.log.Debug("request", "seq", req.Seq, "method", req.Method, "path", req.Path, "query", req.RawQuery, "scripted", scripted)

	switch {
	case req.IsMessages() && req.Stream:
		s.stream(w, r.Context(), req, turn)
	case req.IsMessages():
		// A non-streaming call: answer a fixed short message.
		writeJSON(w, http.StatusOK, map[string]any{
			"id": "msg_plain", "type": "message", "role": "assistant", "model": s.model(req),
			"content":     []map[string]string{{"type": "text", "text": "ok"}},
			"stop_reason": "end_turn", "usage": map[string]int{"input_tokens": 1, "output_tokens": 1},
		})
	case r.Method == http.MethodPost && r.URL.Path == "/v1/messages/count_tokens":
		writeJSON(w, http.StatusOK, map[string]int{"input_tokens": 1})
	case r.Method == http.MethodHead || (r.Method == http.MethodGet && r.URL.Path == "/"):
		w.WriteHeader(http.StatusOK)
	default:
		writeAPIError(w, http.StatusNotFound, "not_found_error", "apidouble: no such endpoint "+r.URL.Path)
	}
}

// record stores req and, for a streaming Messages request, takes the turn
// that answers it.
func (s *Server) record(req *Request) (Turn, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	req.Seq = len(s.requests) + 1
	var turn Turn
	ok := false
	if req.IsMessages() && req.Stream && len(s.script) > 0 && (s.script[0].When == nil || s.script[0].When(*req)) {
		turn, ok = s.script[0], true
		s.script = s.script[1:]
	}
	req.Scripted = ok
	s.requests = append(s.requests, *req)
	close(s.changed)
	s.changed = make(chan struct{})
	if !ok {
		if s.cfg.Fallback != nil {
			return *s.cfg.Fallback, false
		}
		return Turn{Steps: []Step{{kind: stepExhausted}}}, false
	}
	return turn, true
}

func (s *Server) model(req Request) string {
	if s.cfg.Model != "" {
		return s.cfg.Model
	}
	if req.Model != "" {
		return req.Model
	}
	return "claude-double"
}

func (s *Server) nextMessageID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.msgID++
	return fmt.Sprintf("msg_double_%d", s.msgID)
}

// wait pauses d; false when the client went away or the server closed.
func (s *Server) wait(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}

// stream plays turn as the Messages API's SSE stream.
func (s *Server) stream(w http.ResponseWriter, ctx context.Context, req Request, turn Turn) {
	sse := &sseWriter{w: w, rc: http.NewResponseController(w)}
	id := s.nextMessageID()
	model := s.model(req)
	started := false
	start := func() bool {
		if started {
			return true
		}
		started = true
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("request-id", "req_"+id)
		w.WriteHeader(http.StatusOK)
		return sse.send("message_start", map[string]any{
			"type": "message_start",
			"message": map[string]any{
				"id": id, "type": "message", "role": "assistant", "model": model,
				"content": []any{}, "stop_reason": nil, "stop_sequence": nil,
				"usage": map[string]int{"input_tokens": 5, "output_tokens": 1},
			},
		})
	}
	index := 0
	stopReason := "end_turn"
	outTokens := 1
	for _, st := range turn.Steps {
		switch st.kind {
		case stepDelay:
			if !s.wait(ctx, st.delay) {
				return
			}
		case stepStatus:
			if started {
				typ, msg := errorKind(st.status)
				sse.send("error", map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
				return
			}
			typ, msg := errorKind(st.status)
			writeAPIError(w, st.status, typ, msg)
			return
		case stepExhausted:
			writeAPIError(w, http.StatusBadRequest, "invalid_request_error", ExhaustedMessage)
			return
		case stepText:
			if !start() || !sse.send("content_block_start", map[string]any{
				"type": "content_block_start", "index": index,
				"content_block": map[string]string{"type": "text", "text": ""},
			}) {
				return
			}
			for _, d := range st.deltas {
				if !s.wait(ctx, st.every) {
					return
				}
				outTokens++
				if !sse.send("content_block_delta", map[string]any{
					"type": "content_block_delta", "index": index,
					"delta": map[string]string{"type": "text_delta", "text": d},
				}) {
					return
				}
			}
			if !sse.send("content_block_stop", map[string]any{"type": "content_block_stop", "index": index}) {
				return
			}
			index++
		case stepToolUse:
			stopReason = "tool_use"
			if !start() || !sse.send("content_block_start", map[string]any{
				"type": "content_block_start", "index": index,
				"content_block": map[string]any{"type": "tool_use", "id": fmt.Sprintf("toolu_%s_%d", id, index), "name": st.name, "input": map[string]any{}},
			}) {
				return
			}
			for _, part := range splitJSON(string(st.input)) {
				if !s.wait(ctx, st.every) {
					return
				}
				if !sse.send("content_block_delta", map[string]any{
					"type": "content_block_delta", "index": index,
					"delta": map[string]string{"type": "input_json_delta", "partial_json": part},
				}) {
					return
				}
			}
			if !sse.send("content_block_stop", map[string]any{"type": "content_block_stop", "index": index}) {
				return
			}
			index++
		}
	}
	if !start() {
		return
	}
	if !sse.send("message_delta", map[string]any{
		"type":  "message_delta",
		"delta": map[string]any{"stop_reason": stopReason, "stop_sequence": nil},
		"usage": map[string]int{"output_tokens": outTokens},
	}) {
		return
	}
	sse.send("message_stop", map[string]string{"type": "message_stop"})
}

// splitJSON cuts a tool input into two partial_json pieces, as the real API
// streams it in several.
func splitJSON(s string) []string {
	if len(s) < 4 {
		return []string{s}
	}
	return []string{s[:len(s)/2], s[len(s)/2:]}
}

type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// send writes one SSE event and flushes; false when the client is gone.
func (e *sseWriter) send(name string, data any) bool {
	b, err := json.Marshal(data)
	if err != nil {
		return false
	}
	if _, err := fmt.Fprintf(e.w, "event: %s\ndata: %s\n\n", name, b); err != nil {
		return false
	}
	return e.rc.Flush() == nil
}

func errorKind(status int) (typ, msg string) {
	switch status {
	case 529:
		return "overloaded_error", "Overloaded"
	case http.StatusTooManyRequests:
		return "rate_limit_error", "Rate limited"
	case http.StatusBadRequest:
		return "invalid_request_error", "Invalid request"
	case http.StatusUnauthorized:
		return "authentication_error", "Invalid API key"
	case http.StatusForbidden:
		return "permission_error", "Permission denied"
	case http.StatusNotFound:
		return "not_found_error", "Not found"
	default:
		return "api_error", strings.TrimSpace(http.StatusText(status) + " (apidouble)")
	}
}

func writeAPIError(w http.ResponseWriter, status int, typ, msg string) {
	if status == http.StatusTooManyRequests || status == 529 {
		w.Header().Set("retry-after", "0")
	}
	writeJSON(w, status, map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
