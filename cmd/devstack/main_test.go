package main

import (
	"bufio"
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

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// buildAll builds the three binaries the stack runs into one folder, as
// `make build` does.
func buildAll(t *testing.T) string {
	t.Helper()
	return testbin.Build(t, "breakglass/cmd/keyholder", "breakglass/cmd/web", "breakglass/cmd/devstack")
}

// stack is a running devstack process and what it printed.
type stack struct {
	cmd    *exec.Cmd
	stderr *syncWriter
	url    string
	folder string
	// code is the enrollment code the stack printed.
	code   string
	exited chan error
}

func startStack(t *testing.T) *stack {
	t.Helper()
	// No claude on this PATH: the stack must come up without it.
	return startStackIn(t, buildAll(t), "PATH=/usr/bin:/bin", "BREAKGLASS_CLAUDE_BIN="+filepath.Join(t.TempDir(), "no-claude"))
}

// startStackIn runs bin/devstack with exactly env and waits until it says
// it is up.
func startStackIn(t *testing.T, bin string, env ...string) *stack {
	t.Helper()
	cmd := exec.Command(filepath.Join(bin, "devstack"), "-listen", "127.0.0.1:0")
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	stderr := &syncWriter{}
	cmd.Stderr = stderr
	require.NoError(t, cmd.Start())
	s := &stack{cmd: cmd, stderr: stderr, exited: make(chan error, 1)}
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		s.exited <- cmd.Wait()
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
	})
	deadline := time.After(2 * time.Minute)
	for s.url == "" || s.folder == "" || s.code == "" {
		select {
		case l, ok := <-lines:
			require.True(t, ok, "devstack ended before it was up:\n%s", stderr.String())
			if u, ok := strings.CutPrefix(l, "breakglass is up: "); ok {
				s.url = strings.TrimSuffix(u, "/")
			}
			if f, ok := strings.CutPrefix(l, "folder: "); ok {
				s.folder = f
			}
			if _, c, ok := strings.Cut(l, " with the code "); ok {
				s.code, _, _ = strings.Cut(c, " ")
			}
		case <-deadline:
			t.Fatalf("devstack not up after 2 minutes:\n%s", stderr.String())
		}
	}
	go func() {
		for range lines {
		}
	}()
	return s
}

// syncWriter is a buffer the child's output goroutine and the test share.
type syncWriter struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncWriter) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func post(t *testing.T, url string) map[string]any {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", url, body)
	var out map[string]any
	require.NoError(t, json.Unmarshal(body, &out))
	return out
}

// postJSON posts body, checks the status and decodes the JSON answer.
func postJSON(t *testing.T, url, body string, want int) map[string]any {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, want, resp.StatusCode, "%s: %s", url, b)
	var out map[string]any
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func TestStack(t *testing.T) {
	s := startStack(t)

	t.Run("prints-the-enrollment-code", func(t *testing.T) {
		assert.Regexp(t, `^[0-9]{8}$`, s.code)
		assert.True(t, strings.HasPrefix(s.url, "http://localhost:"), "WebAuthn needs a host name: %s", s.url)
	})

	t.Run("readable-log-lines", func(t *testing.T) {
		out := s.stderr.String()
		assert.Regexp(t, `(?m)^[0-9:]{8} web +info +web listening addr=127\.0\.0\.1:`, out, "one readable line per event")
		assert.NotContains(t, out, `"@message"`, "no raw JSON on the terminal")
	})

	t.Run("serves-the-ui", func(t *testing.T) {
		resp, err := http.Get(s.url + "/")
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Contains(t, resp.Header.Get("Content-Type"), "text/html")
	})

	t.Run("verbs-change-the-simulated-vm", func(t *testing.T) {
		out := post(t, s.url+"/api/vm/status")
		assert.Contains(t, out["output"], "status: running")
		// Presence is required in the local stack: no passkey, no stop.
		resp, err := http.Post(s.url+"/api/vm/stop", "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode)
		out = post(t, s.url+"/api/vm/status")
		assert.Contains(t, out["output"], "status: running")

		// Enroll a passkey with the printed code through the web, as the
		// Enroll page does; then it stops the VM.
		phone := passkey.New("localhost", s.url)
		opts := postJSON(t, s.url+"/api/enroll/options", `{"name":"phone"}`, http.StatusOK)
		pk := opts["publicKey"].(map[string]any)
		f := phone.Create(ipc.Enrollment{EnrollmentID: opts["enrollment_id"].(string), Challenge: pk["challenge"].(string)}, s.code)
		b, err := json.Marshal(map[string]string{"enrollment_id": opts["enrollment_id"].(string), "code": f.Code,
			"credential_id": f.CredentialID, "client_data_json": f.ClientDataJSON, "attestation_object": f.AttestationObject})
		require.NoError(t, err)
		line := postJSON(t, s.url+"/api/enroll", string(b), http.StatusCreated)
		assert.Equal(t, phone.Line("phone"), line["line"])
		assert.Equal(t, true, line["appended"], "the operators file in the stack's folder")

		ch := postJSON(t, s.url+"/api/vm/stop/challenge", `{}`, http.StatusOK)
		p := phone.Get(ipc.Challenge{ChallengeID: ch["challenge_id"].(string), Challenge: ch["publicKey"].(map[string]any)["challenge"].(string)})
		b, err = json.Marshal(map[string]any{"presence": p})
		require.NoError(t, err)
		postJSON(t, s.url+"/api/vm/stop", string(b), http.StatusOK)
		out = post(t, s.url+"/api/vm/status")
		assert.Contains(t, out["output"], "status: stopped")

		// And starts it again (the devvm answers only while it runs).
		ch = postJSON(t, s.url+"/api/vm/start/challenge", `{}`, http.StatusOK)
		p = phone.Get(ipc.Challenge{ChallengeID: ch["challenge_id"].(string), Challenge: ch["publicKey"].(map[string]any)["challenge"].(string)})
		b, err = json.Marshal(map[string]any{"presence": p})
		require.NoError(t, err)
		postJSON(t, s.url+"/api/vm/start", string(b), http.StatusOK)
		out = post(t, s.url+"/api/vm/status")
		assert.Contains(t, out["output"], "status: running")
	})

	t.Run("ssh-devvm-through-the-agent", func(t *testing.T) {
		config := filepath.Join(s.folder, "sessions", "agent", "ssh_config")
		require.FileExists(t, config)
		cmd := exec.Command("ssh", "-F", config, "devvm", "echo", "hello from the devvm")
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "hello from the devvm")
	})

	// Ctrl-C stops every process and removes the folder with the keys.
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGINT))
	select {
	case err := <-s.exited:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("devstack did not stop on SIGINT")
	}
	assert.NoDirExists(t, s.folder)
	_, err := http.Get(s.url + "/healthz")
	assert.Error(t, err, "the edge still answers after Ctrl-C")
}

// TestChatAsMakeRunDoes is a new user's first chat: `make run` built the
// binaries into bin/ and installed the pinned claude CLI into .tools/, and
// the environment holds nothing but PATH and ANTHROPIC_API_KEY (plus, here,
// the base URL of the Messages API double, since tests never leave
// loopback). The stack finds the pinned CLI by itself and the turn answers.
func TestChatAsMakeRunDoes(t *testing.T) {
	built := buildAll(t)
	checkout := t.TempDir()
	bin := filepath.Join(checkout, "bin")
	require.NoError(t, os.Mkdir(bin, 0o755))
	for _, name := range []string{"devstack", "keyholder", "web"} {
		require.NoError(t, os.Link(filepath.Join(built, name), filepath.Join(bin, name)))
	}
	// The pinned CLI where make deps-claude puts it, next to bin/.
	pinned := testbin.PinnedClaude(checkout)
	require.NoError(t, os.MkdirAll(filepath.Dir(pinned), 0o755))
	require.NoError(t, os.Symlink(testbin.Claude(t), pinned))

	double, err := apidouble.New(apidouble.Config{Script: []apidouble.Turn{apidouble.T(apidouble.Text("Hello from the model."))}})
	require.NoError(t, err)
	t.Cleanup(double.Close)
	const key = "sk-ant-make-run-0123456789"
	s := startStackIn(t, bin, "PATH=/usr/local/bin:/usr/bin:/bin", "ANTHROPIC_API_KEY="+key, "ANTHROPIC_BASE_URL="+double.URL())
	t.Cleanup(func() { _ = s.cmd.Process.Signal(syscall.SIGINT); <-s.exited })

	created := postJSON(t, s.url+"/api/sessions", `{}`, http.StatusCreated)
	id := created["id"].(string)
	postJSON(t, s.url+"/api/sessions/"+id+"/prompt", `{"text":"hello"}`, http.StatusAccepted)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	st, err := webtest.Attach(ctx, http.DefaultClient, s.url, "operator", id, 0)
	require.NoError(t, err)
	defer st.Close()
	events := st.UntilDone(t)
	done, ok := webtest.Find(events, "done")
	require.True(t, ok)
	assert.Equal(t, "success", done.Data["outcome"], "%v\n%s", webtest.Types(events), s.stderr.String())
	assert.Contains(t, webtest.Types(events), "text")

	reqs := double.MessageRequests()
	require.NotEmpty(t, reqs, "the CLI reached the API")
	assert.Equal(t, key, reqs[0].Header.Get("X-Api-Key"), "with the operator's key")
	assert.Contains(t, s.stderr.String(), "web.session      info  turn started", "the turn is on the terminal, one readable line")
	assert.NotContains(t, s.stderr.String(), "using the claude CLI on PATH")
}
