package apidouble

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type sseEvent struct {
	Name string
	Data map[string]any
}

func newServer(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// post sends a Messages request the way the CLI does and returns the status
// and, for a 200, the parsed SSE events.
func post(t *testing.T, ctx context.Context, s *Server, body string) (int, []sseEvent, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/messages?beta=true", strings.NewReader(body))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, nil, b
	}
	var evs []sseEvent
	sc := bufio.NewScanner(resp.Body)
	var name string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			name = strings.TrimPrefix(line, "event: ")
		case strings.HasPrefix(line, "data: "):
			var d map[string]any
			require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &d))
			assert.Equal(t, name, d["type"], "event name and data type agree")
			evs = append(evs, sseEvent{Name: name, Data: d})
		}
	}
	return resp.StatusCode, evs, nil
}

const firstBody = `{"model":"m1","stream":true,"messages":[{"role":"user","content":"hello"}]}`

const toolResultBody = `{"model":"m1","stream":true,"messages":[
 {"role":"user","content":[{"type":"text","text":"hello"}]},
 {"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"Bash","input":{"command":"echo hi"}}]},
 {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"hi"}],"is_error":false}]}]}`

func names(evs []sseEvent) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.Name)
	}
	return out
}

func TestStreamTextAndTool(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{T(Text("Checking the disk now."), Bash("df -h"))}})
	code, evs, _ := post(t, t.Context(), s, firstBody)
	require.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{
		"message_start",
		"content_block_start", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_delta", "content_block_stop",
		"content_block_start", "content_block_delta", "content_block_delta", "content_block_stop",
		"message_delta", "message_stop",
	}, names(evs))

	var text, input strings.Builder
	for _, e := range evs {
		if e.Name != "content_block_delta" {
			continue
		}
		d := e.Data["delta"].(map[string]any)
		switch d["type"] {
		case "text_delta":
			assert.EqualValues(t, 0, e.Data["index"])
			text.WriteString(d["text"].(string))
		case "input_json_delta":
			assert.EqualValues(t, 1, e.Data["index"])
			input.WriteString(d["partial_json"].(string))
		}
	}
	assert.Equal(t, "Checking the disk now.", text.String())
	assert.JSONEq(t, `{"command":"df -h"}`, input.String())
	assert.Equal(t, "m1", evs[0].Data["message"].(map[string]any)["model"], "model echoed")
	assert.Equal(t, "tool_use", evs[len(evs)-2].Data["delta"].(map[string]any)["stop_reason"])
	assert.Equal(t, 0, s.Remaining())
}

func TestTextDeltasExact(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{T(TextDeltas("a", "b c", ""))}})
	code, evs, _ := post(t, t.Context(), s, firstBody)
	require.Equal(t, http.StatusOK, code)
	var got []string
	for _, e := range evs {
		if e.Name == "content_block_delta" {
			got = append(got, e.Data["delta"].(map[string]any)["text"].(string))
		}
	}
	assert.Equal(t, []string{"a", "b c", ""}, got)
	assert.Equal(t, "end_turn", evs[len(evs)-2].Data["delta"].(map[string]any)["stop_reason"])
}

func TestAfterToolResult(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{AfterToolResult(Text("done"))}})

	code, _, body := post(t, t.Context(), s, firstBody)
	assert.Equal(t, http.StatusBadRequest, code, "a request without a tool result does not take the turn")
	assert.Contains(t, string(body), ExhaustedMessage)
	assert.Equal(t, 1, s.Remaining())

	code, _, _ = post(t, t.Context(), s, toolResultBody)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, 0, s.Remaining())

	reqs := s.MessageRequests()
	require.Len(t, reqs, 2)
	assert.False(t, reqs[0].Scripted)
	assert.True(t, reqs[1].Scripted)
	tr := reqs[1].ToolResults()
	require.Len(t, tr, 1)
	assert.Equal(t, "toolu_1", tr[0].ToolUseID)
	assert.Equal(t, "hi", tr[0].Text)
	assert.Equal(t, []string{"hello"}, reqs[1].UserTexts())
	assert.Equal(t, []string{"Checking."}, reqs[1].AssistantTexts())
	assert.Equal(t, "beta=true", reqs[1].RawQuery)
}

func TestStatusErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		typ    string
	}{
		{"overloaded", 529, "overloaded_error"},
		{"internal", 500, "api_error"},
		{"rate-limit", 429, "rate_limit_error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Config{Script: []Turn{T(Status(tc.status), Text("never sent"))}})
			code, _, body := post(t, t.Context(), s, firstBody)
			assert.Equal(t, tc.status, code)
			var e struct {
				Type  string `json:"type"`
				Error struct {
					Type string `json:"type"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(body, &e))
			assert.Equal(t, "error", e.Type)
			assert.Equal(t, tc.typ, e.Error.Type)
		})
	}
}

func TestStatusMidStream(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{T(Text("partial"), Status(529))}})
	code, evs, _ := post(t, t.Context(), s, firstBody)
	require.Equal(t, http.StatusOK, code)
	last := evs[len(evs)-1]
	assert.Equal(t, "error", last.Name)
	assert.Equal(t, "overloaded_error", last.Data["error"].(map[string]any)["type"])
}

func TestFallback(t *testing.T) {
	fb := T(Text("fixed answer"))
	s := newServer(t, Config{Fallback: &fb})
	code, evs, _ := post(t, t.Context(), s, firstBody)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, names(evs), "content_block_delta")
	code, _, _ = post(t, t.Context(), s, firstBody)
	assert.Equal(t, http.StatusOK, code, "the fallback is never used up")
}

func TestOtherEndpoints(t *testing.T) {
	s := newServer(t, Config{})
	tests := []struct {
		name, method, path, body string
		want                     int
	}{
		{"count-tokens", http.MethodPost, "/v1/messages/count_tokens", `{}`, http.StatusOK},
		{"head", http.MethodHead, "/", "", http.StatusOK},
		{"non-streaming", http.MethodPost, "/v1/messages", `{"model":"m","messages":[]}`, http.StatusOK},
		{"unknown", http.MethodGet, "/v1/models", "", http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequestWithContext(t.Context(), tc.method, s.URL()+tc.path, strings.NewReader(tc.body))
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			assert.Equal(t, tc.want, resp.StatusCode)
		})
	}
	assert.Len(t, s.Requests(), len(tests), "every request is recorded")
}

func TestDelayEndsWhenClientLeaves(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{T(Delay(time.Hour), Text("late"))}})
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(firstBody))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	require.NoError(t, s.WaitMessages(t.Context(), 1))
	cancel()
	assert.Error(t, <-errc)
	s.Close() // waits for the handler: it must have left its delay
}

func TestCloseEndsDelays(t *testing.T) {
	s, err := New(Config{Script: []Turn{T(Text("first "), Delay(time.Hour), Text("late"))}})
	require.NoError(t, err)
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest(http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(firstBody))
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	require.NoError(t, s.WaitMessages(t.Context(), 1))
	s.Close()
	<-done
	assert.Error(t, s.WaitMessages(t.Context(), 2), "waiting on a closed server returns")
}

func TestConcurrentRequests(t *testing.T) {
	const n = 8
	var turns []Turn
	for range n {
		turns = append(turns, T(Text("x y z")))
	}
	s := newServer(t, Config{Script: turns})
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(firstBody))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				codes <- 0
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes <- resp.StatusCode
		})
		s.Push() // Push and Remaining race with requests safely
		_ = s.Remaining()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		assert.Equal(t, http.StatusOK, c)
	}
	assert.Equal(t, 0, s.Remaining())
	assert.Len(t, s.MessageRequests(), n)
}

func TestListensOnLoopbackOnly(t *testing.T) {
	s := newServer(t, Config{})
	assert.True(t, strings.HasPrefix(s.URL(), "http://127.0.0.1:"), s.URL())
}

func TestSplitWords(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"empty", "", []string{""}},
		{"one", "word", []string{"word"}},
		{"spaces-kept", "a  b c ", []string{"a  ", "b ", "c "}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := splitWords(tc.in)
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.in, strings.Join(got, ""))
		})
	}
}

func TestEveryPausesBetweenDeltas(t *testing.T) {
	s := newServer(t, Config{})
	s.Push(T(Text("a b c").Every(time.Hour)))
	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL()+"/v1/messages", strings.NewReader(firstBody))
	require.NoError(t, err)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	sc := bufio.NewScanner(resp.Body)
	var seen []string
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			seen = append(seen, name)
			if name == "content_block_start" {
				break // the first delta waits an hour
			}
		}
	}
	assert.Equal(t, []string{"message_start", "content_block_start"}, seen)
	cancel()
	resp.Body.Close()
	s.Close() // returns only once the paused handler has ended
}
