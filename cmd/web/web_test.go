package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// joinText joins the deltas of consecutive text events from es[i].
func joinText(es []ev, i int) (string, int) {
	var b strings.Builder
	for ; i < len(es) && (es[i].Type == "text" || es[i].Type == "status"); i++ {
		if es[i].Type == "text" {
			b.WriteString(es[i].Data["delta"].(string))
		}
	}
	return b.String(), i
}

func indexOf(es []ev, typ string) int {
	for i, e := range es {
		if e.Type == typ {
			return i
		}
	}
	return -1
}

// TestRealTurn runs the real claude CLI against the scripted API through the
// web's HTTP API: text streamed, a Bash call and its result, the answer,
// then a second prompt that resumes the conversation.
func TestRealTurn(t *testing.T) {
	s := newStack(t,
		apidouble.T(apidouble.Text("Let me check the disk. "), apidouble.Bash("echo breakglass-ok")),
		apidouble.AfterToolResult(apidouble.Text("The command printed breakglass-ok.")),
		apidouble.T(apidouble.Text("Second answer.")),
	)
	w := s.StartWeb(t)
	id := w.NewSession(t)
	w.Prompt(t, id, "first prompt: check the disk")
	got := w.Turn(t, id, 0, 90*time.Second)

	for i := range got {
		require.Equal(t, int64(i+1), got[i].ID, "ids strictly increasing from 1")
	}
	require.Equal(t, []string{"user", "session", "text", "tool", "tool_result", "text", "result", "done"}, shape(got), "%v", webtest.Types(got))
	assert.Equal(t, "first prompt: check the disk", got[0].Data["text"])
	assert.Equal(t, "alice", got[0].Data["actor"])
	assert.Equal(t, id, got[1].Data["session_id"])
	text1, _ := joinText(got, indexOf(got, "text"))
	assert.Equal(t, "Let me check the disk. ", text1, "deltas joined = the scripted text, once")
	tool := got[indexOf(got, "tool")]
	assert.Equal(t, "Bash", tool.Data["name"])
	assert.Equal(t, "echo breakglass-ok", tool.Data["input"])
	res := got[indexOf(got, "tool_result")]
	assert.Equal(t, tool.Data["tool_use_id"], res.Data["tool_use_id"])
	assert.Contains(t, res.Data["output"], "breakglass-ok")
	text2, _ := joinText(got, indexOf(got, "tool_result")+1)
	assert.Equal(t, "The command printed breakglass-ok.", text2)
	assert.Equal(t, false, got[indexOf(got, "result")].Data["is_error"])
	done := got[len(got)-1]
	assert.Equal(t, "success", done.Data["outcome"])
	assert.Equal(t, float64(0), done.Data["exit_code"])
	assert.Contains(t, webtest.Types(got), "status")

	w.Prompt(t, id, "second prompt")
	got2 := w.Turn(t, id, done.ID, 90*time.Second)
	assert.Equal(t, done.ID+1, got2[0].ID)
	assert.Equal(t, "success", got2[len(got2)-1].Data["outcome"], "%v", webtest.Types(got2))
	reqs := s.Double.MessageRequests()
	last := reqs[len(reqs)-1]
	assert.Contains(t, strings.Join(last.UserTexts(), "\n"), "first prompt: check the disk", "the second turn resumes the conversation")
	assert.Contains(t, strings.Join(last.AssistantTexts(), "\n"), "The command printed breakglass-ok.")

	code, body := w.Do(t, http.MethodGet, "/api/sessions/"+id, "")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"title":"first prompt: check the disk"`)
	assert.Contains(t, body, `"state":"idle"`)
}

// TestRealCancelAndResume cancels a turn waiting on a slow API answer.
func TestRealCancelAndResume(t *testing.T) {
	s := newStack(t,
		apidouble.T(apidouble.Text("Started. ")),
		apidouble.T(apidouble.Delay(5*time.Minute), apidouble.Text("never")),
	)
	w := s.StartWeb(t)
	id := w.NewSession(t)
	w.Prompt(t, id, "remember the word kestrel")
	first := w.Turn(t, id, 0, 90*time.Second)
	require.Equal(t, "success", first[len(first)-1].Data["outcome"])

	w.Prompt(t, id, "now wait")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, s.Double.WaitMessages(ctx, 2))
	code, body := w.Do(t, http.MethodPost, "/api/sessions/"+id+"/cancel", "")
	require.Equal(t, http.StatusAccepted, code, body)
	cancelled := time.Now()
	got := w.Turn(t, id, first[len(first)-1].ID, 30*time.Second)
	assert.Less(t, time.Since(cancelled), 5*time.Second, "done(cancelled) within 5 s")
	assert.Equal(t, "cancelled", got[len(got)-1].Data["outcome"], "%v", webtest.Types(got))
	assert.Empty(t, webtest.Descendants(w.Pid()), "no process of the turn is left")
	code, _ = w.Do(t, http.MethodPost, "/api/sessions/"+id+"/cancel", "")
	assert.Equal(t, http.StatusConflict, code, "nothing left to cancel")

	s.Double.Push(apidouble.T(apidouble.Text("Resumed.")))
	w.Prompt(t, id, "and now?")
	got = w.Turn(t, id, got[len(got)-1].ID, 90*time.Second)
	assert.Equal(t, "success", got[len(got)-1].Data["outcome"], "%v", webtest.Types(got))
	reqs := s.Double.MessageRequests()
	assert.Contains(t, strings.Join(reqs[len(reqs)-1].UserTexts(), "\n"), "remember the word kestrel", "the next prompt resumes the same conversation")
}

// TestRealTimeout ends a turn on a slow answer after the configured 2 s.
func TestRealTimeout(t *testing.T) {
	s := newStack(t, apidouble.T(apidouble.Delay(5*time.Minute), apidouble.Text("never")))
	w := s.StartWeb(t, "BREAKGLASS_TURN_TIMEOUT_SECONDS=2")
	id := w.NewSession(t)
	w.Prompt(t, id, "slow")
	got := w.Turn(t, id, 0, 60*time.Second)
	assert.Equal(t, "timeout", got[len(got)-1].Data["outcome"], "%v", webtest.Types(got))
	assert.Empty(t, webtest.Descendants(w.Pid()), "nothing left running")
}

// TestMissingClaude: BREAKGLASS_CLAUDE_BIN points nowhere; the turn ends
// with an error saying so, and the server stays up.
func TestMissingClaude(t *testing.T) {
	s := newStack(t)
	w := s.StartWeb(t, "BREAKGLASS_CLAUDE_BIN=/nonexistent/claude")
	id := w.NewSession(t)
	for round := 0; round < 2; round++ {
		w.Prompt(t, id, "hello")
		var last int64
		if round == 1 {
			last = 3
		}
		got := w.Turn(t, id, last, 30*time.Second)
		require.Equal(t, []string{"user", "error", "done"}, webtest.Types(got))
		assert.Contains(t, got[1].Data["message"], "claude")
		assert.Equal(t, "error", got[2].Data["outcome"])
	}
	code, _ := w.Do(t, http.MethodGet, "/healthz", "")
	assert.Equal(t, http.StatusOK, code)
}

// TestRestartAfterKill kills the web with SIGKILL during a turn and starts
// it again on the same sessions folder.
func TestRestartAfterKill(t *testing.T) {
	s := newStack(t,
		apidouble.T(apidouble.Text("Noted the codeword osprey.")),
		apidouble.T(apidouble.Text("Working on it "), apidouble.Delay(5*time.Minute)),
	)
	a := s.StartWeb(t)
	id := a.NewSession(t)
	a.Prompt(t, id, "the codeword is osprey")
	first := a.Turn(t, id, 0, 90*time.Second)
	require.Equal(t, "success", first[len(first)-1].Data["outcome"])

	a.Prompt(t, id, "keep working")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	st := a.Attach(t, ctx, id, first[len(first)-1].ID)
	var partial []ev
	var streamed strings.Builder
	for streamed.String() != "Working on it " {
		e, err := st.Next()
		require.NoError(t, err)
		partial = append(partial, e)
		if e.Type == "text" {
			streamed.WriteString(e.Data["delta"].(string))
		}
	}
	// The turn is streaming and waits on the API: kill the web now.
	orphans := webtest.Descendants(a.Pid())
	require.NoError(t, a.Signal(syscall.SIGKILL))
	<-a.Done()
	// The kernel would take the whole pod down; here, end claude by hand.
	for _, p := range orphans {
		_ = syscall.Kill(p, syscall.SIGKILL)
	}

	b := s.StartWeb(t)
	st = b.Attach(t, ctx, id, 0)
	var replay []ev
	for len(replay) < len(first)+len(partial) {
		e, err := st.Next()
		require.NoError(t, err)
		replay = append(replay, e)
	}
	for i := range first {
		assert.Equal(t, first[i].ID, replay[i].ID)
		assert.Equal(t, first[i].Type, replay[i].Type)
		assert.JSONEq(t, first[i].Raw, replay[i].Raw, "every event of the finished turn is replayed")
	}
	for i := range partial {
		assert.Equal(t, partial[i].Raw, replay[len(first)+i].Raw)
	}
	tail := st.UntilDone(t)
	require.GreaterOrEqual(t, len(tail), 2)
	for _, e := range tail[:len(tail)-2] {
		assert.Contains(t, []string{"status", "text"}, e.Type, "only the turn's own events came before the kill")
	}
	end := tail[len(tail)-2:]
	require.Equal(t, []string{"error", "done"}, webtest.Types(end), "the interrupted turn ends with error + done")
	assert.Equal(t, "error", end[1].Data["outcome"])

	s.Double.Push(apidouble.T(apidouble.Text("Back.")))
	b.Prompt(t, id, "are you there?")
	got := b.Turn(t, id, end[1].ID, 90*time.Second)
	assert.Equal(t, "success", got[len(got)-1].Data["outcome"], "%v", webtest.Types(got))
	reqs := s.Double.MessageRequests()
	assert.Contains(t, strings.Join(reqs[len(reqs)-1].UserTexts(), "\n"), "the codeword is osprey", "the next prompt resumes the conversation")
}

// TestMetricsListener: /metrics only on the metrics listener, with the names
// of the README (Metrics), and keyholder_up 0 when no keyholder answers.
func TestMetricsListener(t *testing.T) {
	s := newStack(t)
	w := s.StartWeb(t)
	code, _ := w.Do(t, http.MethodPost, "/api/vm/status", "{}")
	assert.Equal(t, http.StatusServiceUnavailable, code, "the keyholder is down")
	code, body := w.Do(t, http.MethodGet, "/metrics", "")
	assert.Equal(t, http.StatusNotFound, code)
	assert.NotContains(t, body, "breakglass_")

	resp, err := http.Get(w.MetricsURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	text := string(b)
	for _, name := range []string{
		"breakglass_turns_total", "breakglass_turn_duration_seconds", "breakglass_turns_running",
		"breakglass_sessions", "breakglass_sse_subscribers", "breakglass_verb_requests_total",
		"breakglass_auth_failures_total", "breakglass_agent_cost_usd_total", "breakglass_stream_lines_total",
	} {
		assert.Contains(t, text, "# TYPE "+name+" ", name)
	}
	assert.Contains(t, text, "\nkeyholder_up 0\n")
	code, _ = w.Do(t, http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, code)
}

// TestBadConfiguration: a bad value is a clear error and a non-zero exit.
func TestBadConfiguration(t *testing.T) {
	cmd := command(t, buildWeb(t), "BREAKGLASS_TURN_TIMEOUT_SECONDS=soon", "BREAKGLASS_TRUSTED_PROXIES=10.0.0.0/33")
	out, err := cmd.CombinedOutput()
	require.Error(t, err)
	assert.Equal(t, 2, cmd.ProcessState.ExitCode())
	assert.Contains(t, string(out), "BREAKGLASS_TURN_TIMEOUT_SECONDS")
	assert.Contains(t, string(out), "BREAKGLASS_TRUSTED_PROXIES")
}

// command prepares the binary with only env set.
func command(t *testing.T, bin string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	return cmd
}

// TestRealReconnects disconnects a client at 50 random points of a long turn
// the real CLI streams, and reconnects with Last-Event-ID each time: the
// union of what it saw is the log, in order, with no gap and no duplicate.
func TestRealReconnects(t *testing.T) {
	words := make([]string, 300)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	long := strings.Join(words, " ")
	s := newStack(t, apidouble.T(apidouble.Text(long).Every(10*time.Millisecond)))
	w := s.StartWeb(t)
	id := w.NewSession(t)
	w.Prompt(t, id, "stream a lot")

	rng := rand.New(rand.NewPCG(7, 11))
	cuts := map[int]bool{}
	for len(cuts) < 50 {
		cuts[rng.IntN(250)+2] = true
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	var seen []ev
	last := int64(0)
	reconnects := 0
	for done := false; !done; {
		cctx, ccancel := context.WithCancel(ctx)
		st := w.Attach(t, cctx, id, last)
		for {
			e, err := st.Next()
			require.NoError(t, err)
			seen = append(seen, e)
			last = e.ID
			if e.Type == "done" {
				done = true
				break
			}
			if cuts[len(seen)] {
				reconnects++
				break
			}
		}
		ccancel()
	}
	assert.Equal(t, 50, reconnects)
	for i, e := range seen {
		require.Equal(t, int64(i+1), e.ID, "gap or duplicate")
	}
	// The union is the log: a fresh full attach gives the same events.
	full := w.Turn(t, id, 0, 30*time.Second)
	require.Len(t, full, len(seen))
	for i := range full {
		assert.Equal(t, full[i].Raw, seen[i].Raw)
	}
	text, _ := joinText(seen, indexOf(seen, "text"))
	assert.Equal(t, long, text)
	assert.Equal(t, "success", seen[len(seen)-1].Data["outcome"])
}

// TestGracefulShutdown: SIGTERM during a turn ends it (error + done, written
// before the process exits), leaves no claude behind, and exits 0.
func TestGracefulShutdown(t *testing.T) {
	s := newStack(t, apidouble.T(apidouble.Text("Waiting "), apidouble.Delay(5*time.Minute)))
	w := s.StartWeb(t)
	id := w.NewSession(t)
	w.Prompt(t, id, "wait")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	require.NoError(t, s.Double.WaitMessages(ctx, 1))
	st := w.Attach(t, ctx, id, 0)
	turnProcs := webtest.Descendants(w.Pid())
	require.NotEmpty(t, turnProcs, "claude runs under the web")
	require.NoError(t, w.Signal(syscall.SIGTERM))
	got := st.UntilDone(t)
	end := got[len(got)-2:]
	assert.Equal(t, []string{"error", "done"}, webtest.Types(end), "%v", webtest.Types(got))
	assert.Contains(t, end[0].Data["message"], "stopped")
	select {
	case <-w.Done():
	case <-ctx.Done():
		t.Fatal("web did not exit after SIGTERM")
	}
	assert.Equal(t, 0, w.ExitCode(), w.Logs())
	for _, p := range turnProcs {
		assert.False(t, webtest.Alive(p), "process %d of the turn outlived the web", p)
	}

	b := s.StartWeb(t)
	replay := b.Turn(t, id, 0, 30*time.Second)
	assert.Equal(t, len(got), len(replay), "the shutdown's done was persisted; nothing added on reload")
}

// TestAuthWiring checks the environment reaches the authentication: the
// identity header from a peer outside BREAKGLASS_TRUSTED_PROXIES is refused,
// and from every peer when it is empty (the default, said at start), the
// bearer token of API_BEARER_TOKEN is accepted, and a cross-site POST with
// the header is refused.
func TestAuthWiring(t *testing.T) {
	s := newStack(t)
	token := "0123456789abcdef-token"
	foreign := s.StartWeb(t, "BREAKGLASS_TRUSTED_PROXIES=10.99.0.0/16", "API_BEARER_TOKEN="+token, "BREAKGLASS_SESSIONS_DIR="+filepath.Join(s.Dir, "sessions-foreign"))
	local := s.StartWeb(t)
	unset := s.StartWeb(t, "BREAKGLASS_TRUSTED_PROXIES=", "API_BEARER_TOKEN="+token, "BREAKGLASS_SESSIONS_DIR="+filepath.Join(s.Dir, "sessions-unset"))
	assert.Contains(t, unset.Logs(), "BREAKGLASS_TRUSTED_PROXIES is empty: the identity header is refused from every peer")
	assert.NotContains(t, local.Logs(), "BREAKGLASS_TRUSTED_PROXIES is empty")

	send := func(w *stacktest.Web, method, path string, h map[string]string) int {
		req, err := http.NewRequest(method, w.URL+path, strings.NewReader("{}"))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := w.Client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	tests := []struct {
		name   string
		w      *stacktest.Web
		method string
		path   string
		h      map[string]string
		want   int
	}{
		{"no-credentials", local, "GET", "/api/sessions", nil, 401},
		{"header-trusted", local, "GET", "/api/sessions", map[string]string{"X-Authentik-Username": "alice"}, 200},
		{"header-untrusted-peer", foreign, "GET", "/api/sessions", map[string]string{"X-Authentik-Username": "alice"}, 401},
		{"header-off-by-default", unset, "GET", "/api/sessions", map[string]string{"X-Authentik-Username": "alice"}, 401},
		// The page is static code, served before sign-in so the passkey
		// sign-in page shows with the SSO down; its data stays behind /api.
		{"page-before-sign-in", unset, "GET", "/", nil, 200},
		{"bearer-right-header-off", unset, "GET", "/api/sessions", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"bearer-right", foreign, "GET", "/api/sessions", map[string]string{"Authorization": "Bearer " + token}, 200},
		{"bearer-wrong", foreign, "GET", "/api/sessions", map[string]string{"Authorization": "Bearer " + token + "x"}, 401},
		{"bearer-unset", local, "GET", "/api/sessions", map[string]string{"Authorization": "Bearer " + token}, 401},
		{"cross-site-post", local, "POST", "/api/sessions", map[string]string{"X-Authentik-Username": "alice", "Sec-Fetch-Site": "cross-site"}, 403},
		{"foreign-origin-post", local, "POST", "/api/sessions", map[string]string{"X-Authentik-Username": "alice", "Origin": "https://evil.example"}, 403},
		{"same-origin-post", local, "POST", "/api/sessions", map[string]string{"X-Authentik-Username": "alice", "Sec-Fetch-Site": "same-origin"}, 201},
		{"healthz-open", foreign, "GET", "/healthz", nil, 200},
		{"readyz-open", foreign, "GET", "/readyz", nil, 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, send(tt.w, tt.method, tt.path, tt.h))
		})
	}
}

// TestKeyholderOverSocket runs a keyholder stand-in on
// BREAKGLASS_SOCKET_DIR/keyholder.sock (the real ipc server): /readyz turns
// 200, and /metrics carries its metrics with keyholder_up 1.
func TestKeyholderOverSocket(t *testing.T) {
	s := newStack(t)
	khMux := http.NewServeMux()
	khMux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	khMux.HandleFunc("GET /v1/verbs", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"vmid":102,"verbs":[{"name":"status","mutating":false}]}`)
	})
	khMux.HandleFunc("GET /metrics", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "# HELP keyholder_agent_signs_total Signs.\n# TYPE keyholder_agent_signs_total counter\nkeyholder_agent_signs_total{outcome=\"signed\"} 4\n")
	})
	ln, err := ipc.Listen(filepath.Join(s.SocketDir, ipc.SocketName))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ipc.Serve(ctx, ln, ipc.ServerConfig{Handler: khMux}) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
	})

	w := s.StartWeb(t)
	code, body := w.Do(t, http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusOK, code, body)
	code, body = w.Do(t, http.MethodGet, "/api/vm", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"vmid":102`)

	resp, err := http.Get(w.MetricsURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(b), "\nkeyholder_up 1\n")
	assert.Contains(t, string(b), `keyholder_agent_signs_total{outcome="signed"} 4`)
	assert.Contains(t, string(b), "# TYPE breakglass_turns_total counter")
}
