package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// buildWeb is the web binary, built once for this test binary.
func buildWeb(t testing.TB) string {
	t.Helper()
	return filepath.Join(testbin.Build(t, "breakglass/cmd/web"), "web")
}

// stack is a temp folder layout plus an API double for one or more web
// processes.
type stack struct {
	dir    string
	double *apidouble.Server
	env    map[string]string
}

func newStack(t testing.TB, script ...apidouble.Turn) *stack {
	t.Helper()
	d, err := apidouble.New(apidouble.Config{Script: script})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "known_hosts"), nil, 0o600))
	return &stack{dir: dir, double: d, env: map[string]string{
		"PATH":                       os.Getenv("PATH"),
		"BREAKGLASS_LISTEN":          "127.0.0.1:0",
		"BREAKGLASS_METRICS_LISTEN":  "127.0.0.1:0",
		"BREAKGLASS_SESSIONS_DIR":    filepath.Join(dir, "sessions"),
		"BREAKGLASS_SOCKET_DIR":      filepath.Join(dir, "run"),
		"BREAKGLASS_CLAUDE_BIN":      testbin.Claude(t),
		"BREAKGLASS_DEVVM_HOST":      "127.0.0.1",
		"BREAKGLASS_DEVVM_PORT":      "9",
		"BREAKGLASS_KNOWN_HOSTS":     filepath.Join(dir, "known_hosts"),
		"BREAKGLASS_TRUSTED_PROXIES": "127.0.0.1/32,::1/128",
		// Nobody answers permission questions in these tests.
		"BREAKGLASS_AGENT_MODE":                    "autopilot",
		"ANTHROPIC_BASE_URL":                       d.URL(),
		"ANTHROPIC_API_KEY":                        "test-key",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
		"DISABLE_TELEMETRY":                        "1",
		"DISABLE_AUTOUPDATER":                      "1",
	}}
}

// web is a running web process.
type web struct {
	cmd         *exec.Cmd
	url         string
	metricsURL  string
	exited      chan struct{}
	mu          sync.Mutex
	log         bytes.Buffer
	client      *http.Client
	stopReading sync.WaitGroup
}

// start runs the web binary with the stack's environment plus extra.
func (s *stack) start(t testing.TB, extra map[string]string) *web {
	t.Helper()
	cmd := exec.Command(buildWeb(t))
	for k, v := range s.env {
		if _, ok := extra[k]; !ok {
			cmd.Env = append(cmd.Env, k+"="+v)
		}
	}
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	w := &web{cmd: cmd, exited: make(chan struct{}), client: &http.Client{Transport: &http.Transport{}}}
	ready := make(chan [2]string, 1)
	w.stopReading.Add(1)
	go func() {
		defer w.stopReading.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			w.mu.Lock()
			w.log.WriteString(line + "\n")
			w.mu.Unlock()
			var l struct {
				Msg         string `json:"@message"`
				Addr        string `json:"addr"`
				MetricsAddr string `json:"metrics_addr"`
			}
			if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "web listening" {
				ready <- [2]string{l.Addr, l.MetricsAddr}
			}
		}
	}()
	go func() {
		w.stopReading.Wait()
		_ = cmd.Wait()
		close(w.exited)
	}()
	t.Cleanup(func() { w.stop(t) })
	select {
	case a := <-ready:
		w.url, w.metricsURL = "http://"+a[0], "http://"+a[1]
	case <-w.exited:
		t.Fatalf("web exited before listening:\n%s", w.logs())
	case <-time.After(30 * time.Second):
		t.Fatalf("web not listening after 30s:\n%s", w.logs())
	}
	return w
}

func (w *web) logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.log.String()
}

// stop sends SIGTERM and waits for the process; a process that does not
// stop is killed and the test fails.
func (w *web) stop(t testing.TB) {
	w.client.CloseIdleConnections()
	select {
	case <-w.exited:
		return
	default:
	}
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-w.exited:
	case <-time.After(30 * time.Second):
		_ = w.cmd.Process.Kill()
		<-w.exited
		t.Errorf("web did not stop on SIGTERM:\n%s", w.logs())
	}
}

// do sends a request as operator "alice" through the (loopback) proxy.
func (w *web) do(t testing.TB, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, w.url+path, rd)
	require.NoError(t, err)
	req.Header.Set("X-Authentik-Username", "alice")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := w.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// newSession creates a session and returns its id.
func (w *web) newSession(t testing.TB) string {
	t.Helper()
	code, body := w.do(t, http.MethodPost, "/api/sessions", "{}")
	require.Equal(t, http.StatusCreated, code, body)
	var info struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &info))
	return info.ID
}

// prompt starts a turn.
func (w *web) prompt(t testing.TB, id, text string) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"text": text})
	code, body := w.do(t, http.MethodPost, "/api/sessions/"+id+"/prompt", string(b))
	require.Equal(t, http.StatusAccepted, code, body)
}

// ev and stream are the SSE client of internal/testing/webtest.
type (
	ev     = webtest.Event
	stream = webtest.Stream
)

// attach opens session id's stream after event last, as alice.
func (w *web) attach(t testing.TB, ctx context.Context, id string, last int64) *stream {
	t.Helper()
	s, err := webtest.Attach(ctx, w.client, w.url, "alice", id, last)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

// turn reads one whole turn from id after last, bounded by d.
func (w *web) turn(t testing.TB, id string, last int64, d time.Duration) []ev {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return w.attach(t, ctx, id, last).UntilDone(t)
}

// shape is the event types with status events removed and runs of the same
// type folded into one.
func shape(es []ev) []string {
	var out []string
	for _, e := range es {
		if e.Type == "status" {
			continue
		}
		if len(out) > 0 && out[len(out)-1] == e.Type {
			continue
		}
		out = append(out, e.Type)
	}
	return out
}
