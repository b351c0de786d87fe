package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/sandbox"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/uuid"
)

// TestSandboxReported: the web runs whatever Landlock the kernel has, and
// says what the agent's sandbox gets (forced lower here with
// BREAKGLASS_SANDBOX_MAX_ABI) in the log, /readyz and
// breakglass_agent_sandbox_abi.
func TestSandboxReported(t *testing.T) {
	if sandbox.KernelABI() < sandbox.FullABI {
		t.Skip("the kernel's Landlock is below the full sandbox")
	}
	s := newStack(t)
	for _, tc := range []struct {
		name, max string
		abi       int
		level     sandbox.Level
	}{
		{"full", "", min(sandbox.KernelABI(), sandbox.LatestABI), sandbox.LevelFull},
		{"partial", "3", 3, sandbox.LevelPartial},
		{"missing", "0", 0, sandbox.LevelMissing},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := s.StartWeb(t, "BREAKGLASS_SANDBOX_MAX_ABI="+tc.max)
			var line struct {
				Level string `json:"@level"`
				Msg   string `json:"@message"`
				ABI   int    `json:"abi"`
				Got   string `json:"level"`
			}
			for _, l := range strings.Split(w.Logs(), "\n") {
				if strings.Contains(l, "agent sandbox") {
					require.NoError(t, json.Unmarshal([]byte(l), &line))
				}
			}
			assert.Equal(t, tc.abi, line.ABI, "the log says the ABI")
			assert.Equal(t, string(tc.level), line.Got)
			if tc.level == sandbox.LevelFull {
				assert.Equal(t, "info", line.Level)
			} else {
				assert.Equal(t, "warn", line.Level, "a sandbox that is not full is a warning")
				assert.Contains(t, line.Msg, "confined")
			}

			resp, err := http.Get(w.URL + "/readyz")
			require.NoError(t, err)
			defer resp.Body.Close()
			var ready struct {
				Sandbox sandbox.Status `json:"sandbox"`
			}
			require.NoError(t, json.NewDecoder(resp.Body).Decode(&ready))
			assert.Equal(t, tc.abi, ready.Sandbox.ABI)
			assert.Equal(t, tc.level, ready.Sandbox.Level)
			if tc.level != sandbox.LevelFull {
				assert.NotEmpty(t, ready.Sandbox.Missing, "/readyz says what is not restricted")
			}

			mresp, err := http.Get(w.MetricsURL)
			require.NoError(t, err)
			defer mresp.Body.Close()
			body, err := io.ReadAll(mresp.Body)
			require.NoError(t, err)
			assert.Contains(t, string(body), fmt.Sprintf("\nbreakglass_agent_sandbox_abi %d\n", tc.abi))

			// The web runs: a turn with a Bash tool call completes.
			s.Double.Push(apidouble.T(apidouble.Bash("echo confined-or-not")), apidouble.AfterToolResult(apidouble.Text("ok")))
			id := w.NewSession(t)
			w.Prompt(t, id, "run")
			evs := w.Turn(t, id, 0, 90*time.Second)
			done := evs[len(evs)-1]
			assert.Equal(t, "done", done.Type)
			assert.Equal(t, "success", done.Data["outcome"], "%v", shape(evs))
			require.NoError(t, w.Stop())
		})
	}
}

// runToExit runs the web with the stack's environment plus extra and
// returns its exit status and log; it must exit within a minute.
func runToExit(t *testing.T, s *stacktest.Stack, extra map[string]string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, buildWeb(t))
	cmd.Env = s.WebEnv()
	for k, v := range extra {
		cmd.Env = append(cmd.Env, k+"="+v) // a later entry wins
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("the web did not fail: %v\n%s", err, out)
	}
	return ee.ExitCode(), string(out)
}

// freePort is a TCP port nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	return port
}

// TestRefusesToStartWithinReach: the web does not start when a secret file
// lies where the agent may read, or when it would listen on a port the
// agent may connect to.
func TestRefusesToStartWithinReach(t *testing.T) {
	s := newStack(t)
	sessions := s.SessionsDir
	tokenIn := func(dir string) string {
		require.NoError(t, os.MkdirAll(dir, 0o700))
		f := filepath.Join(dir, "bearer")
		require.NoError(t, os.WriteFile(f, []byte("0123456789abcdef0123456789\n"), 0o600))
		return f
	}
	port := freePort(t)
	for _, tc := range []struct {
		name  string
		extra map[string]string
		want  string
	}{
		{"token-in-agent-folder", map[string]string{"API_BEARER_TOKEN_FILE": tokenIn(filepath.Join(sessions, "agent"))}, "lies under a path the agent may read"},
		{"token-in-a-work-folder", map[string]string{"API_BEARER_TOKEN_FILE": tokenIn(filepath.Join(sessions, uuid.New(), "work"))}, "in a session's own folder"},
		{"ntfy-token-in-a-home", map[string]string{"BREAKGLASS_NTFY_URL": "https://ntfy.example/t", "BREAKGLASS_NTFY_TOKEN_FILE": tokenIn(filepath.Join(sessions, uuid.New(), "home"))}, "in a session's own folder"},
		{"listen-on-devvm-port", map[string]string{"BREAKGLASS_LISTEN": "127.0.0.1:" + port, "BREAKGLASS_DEVVM_PORT": port}, "the agent may connect to port " + port},
		{"metrics-on-proxy-port", map[string]string{"BREAKGLASS_METRICS_LISTEN": "127.0.0.1:" + port, "HTTPS_PROXY": "http://127.0.0.1:" + port}, "the agent may connect to port " + port},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out := runToExit(t, s, tc.extra)
			assert.Equal(t, 1, code, out)
			assert.Contains(t, out, "the agent's sandbox would reach the web")
			assert.Contains(t, out, tc.want)
		})
	}
}

// TestBearerTokenFile: API_BEARER_TOKEN_FILE is read and preferred over
// API_BEARER_TOKEN; a bad file stops the start with a clear error.
func TestBearerTokenFile(t *testing.T) {
	s := newStack(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "bearer")
	require.NoError(t, os.WriteFile(file, []byte("from-the-file-0123456789\n"), 0o600))
	w := s.StartWeb(t, "API_BEARER_TOKEN_FILE="+file, "API_BEARER_TOKEN=from-the-env-0123456789")
	get := func(token string) int {
		req, err := http.NewRequest(http.MethodGet, w.URL+"/api/sessions", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := w.Client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	assert.Equal(t, http.StatusOK, get("from-the-file-0123456789"))
	assert.Equal(t, http.StatusUnauthorized, get("from-the-env-0123456789"), "the file wins")
	require.NoError(t, w.Stop())

	for name, content := range map[string]string{"short": "short\n", "two-words": "0123456789abcdef 0123456789abcdef\n"} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(file, []byte(content), 0o600))
			code, out := runToExit(t, s, map[string]string{"API_BEARER_TOKEN_FILE": file})
			assert.Equal(t, 2, code)
			assert.Contains(t, out, "API_BEARER_TOKEN_FILE")
			assert.NotContains(t, out, strings.TrimSpace(content), "the file's content is not echoed")
		})
	}
	code, out := runToExit(t, s, map[string]string{"API_BEARER_TOKEN_FILE": filepath.Join(dir, "absent")})
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "API_BEARER_TOKEN_FILE")
}
