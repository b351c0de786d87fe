package pvecmd

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/internal/api"
	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/power"
	"breakglass/internal/turntoken"
)

func TestMain(m *testing.M) {
	// Run as `pve` (a symlink to this test binary on the agent's PATH in
	// agent_test.go), the binary is the command itself.
	if filepath.Base(os.Args[0]) == "pve" {
		os.Exit(Main(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
	}
	goleak.VerifyTestMain(m)
}

const (
	sessionA = "0b7e4c52-8c1a-4d0e-9f3b-2a6d5e7f8a91"
	sessionB = "5f0c2d6e-1b3a-4c8d-a7e9-6f4b3c2d1e0a"
)

// fakeKeyholder is a fake keyholder that counts the verbs it runs.
type fakeKeyholder struct {
	mu     sync.Mutex
	calls  []string
	args   [][]string
	result power.Result
	err    error
	block  chan struct{}
}

func (k *fakeKeyholder) Verbs(context.Context) (power.VerbList, error) { return power.VerbList{}, nil }

func (k *fakeKeyholder) RunRequest(ctx context.Context, verb string, req ipc.RunRequest) (power.Result, error) {
	k.mu.Lock()
	k.calls = append(k.calls, verb)
	k.args = append(k.args, req.Args)
	res, err, block := k.result, k.err, k.block
	k.mu.Unlock()
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return power.Result{}, ctx.Err()
		}
	}
	if err != nil {
		return power.Result{}, err
	}
	res.Verb, res.VMID = verb, 102
	if res.Output == "" {
		res.Output = "status: running\n"
	}
	return res, nil
}

func (k *fakeKeyholder) Calls() []string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]string(nil), k.calls...)
}

// transcript records events and signals approvals.
type transcript struct {
	approvals chan event.ApprovalData
}

func (t *transcript) Append(_ string, e event.Event) error {
	if e.Type == event.Approval {
		var d event.ApprovalData
		if json.Unmarshal(e.Data, &d) == nil && d.State == event.ApprovalPending {
			t.approvals <- d
		}
	}
	return nil
}

// web is the power package's handlers on a loopback server.
type web struct {
	svc      *power.Service
	tokens   *turntoken.Set
	kh       *fakeKeyholder
	tr       *transcript
	url      string
	requests atomic.Int64
}

func newWeb(t *testing.T, cfg power.Config) *web {
	t.Helper()
	w := &web{kh: &fakeKeyholder{}, tr: &transcript{approvals: make(chan event.ApprovalData, 8)}, tokens: &turntoken.Set{}}
	cfg.Keyholder, cfg.Transcript, cfg.Tokens = w.kh, w.tr, w.tokens
	svc, err := power.New(cfg)
	require.NoError(t, err)
	w.svc = svc
	r := routes(svc, "")
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		w.requests.Add(1)
		r.ServeHTTP(rw, req)
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

// routes mounts svc's routes on a router: the agent's as they are, the
// operator's (when userHeader is set) for whoever that header names.
func routes(svc *power.Service, userHeader string) *mux.Router {
	r := mux.NewRouter()
	for _, rt := range slices.Concat(svc.Routes(), svc.AgentRoutes()) {
		switch {
		case rt.Open != nil:
			r.HandleFunc(rt.Path, rt.Open).Methods(rt.Method)
		case userHeader != "":
			r.HandleFunc(rt.Path, func(w http.ResponseWriter, req *http.Request) {
				rt.Operator(w, req, wire.Principal{Name: req.Header.Get(userHeader)})
			}).Methods(rt.Method)
		}
	}
	return r
}

// env is a turn's environment for pve.
func (w *web) env(t *testing.T, sessionID string) map[string]string {
	tok, revoke := w.tokens.Issue(sessionID)
	t.Cleanup(revoke)
	return map[string]string{EnvURL: w.url, EnvToken: tok, EnvSession: sessionID}
}

type run struct {
	code           int
	stdout, stderr string
}

func pve(env map[string]string, args ...string) run {
	var out, errb bytes.Buffer
	code := Main(args, func(k string) string { return env[k] }, &out, &errb)
	return run{code, out.String(), errb.String()}
}

func pveAsync(env map[string]string, args ...string) <-chan run {
	ch := make(chan run, 1)
	go func() { ch <- pve(env, args...) }()
	return ch
}

func waitRun(t *testing.T, ch <-chan run) run {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("pve did not exit within 10s")
		return run{}
	}
}

func waitPending(t *testing.T, w *web) string {
	t.Helper()
	select {
	case d := <-w.tr.approvals:
		return d.ApprovalID
	case <-time.After(10 * time.Second):
		t.Fatal("no pending approval within 10s")
		return ""
	}
}

func TestUsage(t *testing.T) {
	w := newWeb(t, power.Config{Policy: power.PolicyAllow})
	env := w.env(t, sessionA)
	tests := []struct {
		name string
		args []string
	}{
		{"none", nil},
		{"two", []string{"status", "reset"}},
		{"verb-and-flag", []string{"stop", "--skiplock"}},
		{"unknown", []string{"reboot"}},
		{"upper", []string{"STATUS"}},
		{"trailing-space", []string{"status "}},
		{"injection", []string{"status;reset"}},
		{"empty", []string{""}},
		{"help", []string{"--help"}},
		{"guest-exec-bare", []string{"guest-exec"}},
		{"guest-exec-no-dashes", []string{"guest-exec", "uptime"}},
		{"guest-exec-nothing-after", []string{"guest-exec", "--"}},
		{"guest-exec-empty-command", []string{"guest-exec", "--", ""}},
		{"guest-exec-nul", []string{"guest-exec", "--", "echo", "a\x00b"}},
		{"guest-exec-seventeen", append([]string{"guest-exec", "--"}, strings.Split(strings.Repeat("a ", 16)+"a", " ")...)},
		{"screenshot-arg", []string{"screenshot", "--", "x"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := pve(env, tc.args...)
			assert.Equal(t, ExitUsage, r.code)
			assert.Contains(t, r.stderr, "usage: pve <verb>")
			for _, v := range []string{"status", "forensics", "reset", "stop", "start", "cycle", "screenshot", "console", "guest", "tasks", "unlock", "guest-exec"} {
				assert.Contains(t, r.stderr, "  "+v+" ")
			}
			assert.Empty(t, r.stdout)
		})
	}
	assert.Zero(t, w.requests.Load(), "a bad verb is refused before any I/O")
	assert.Empty(t, w.kh.Calls())
}

func TestOutsideATurn(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"nothing", nil},
		{"no-token", map[string]string{EnvURL: "http://127.0.0.1:1"}},
		{"no-url", map[string]string{EnvToken: "x"}},
		{"bad-scheme", map[string]string{EnvURL: "file:///etc/passwd", EnvToken: "x"}},
		{"userinfo", map[string]string{EnvURL: "http://u:p@127.0.0.1:1", EnvToken: "x"}},
		{"bad-wait", map[string]string{EnvURL: "http://127.0.0.1:1", EnvToken: "x", EnvWait: "-1"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := pve(tc.env, "status")
			assert.Equal(t, ExitConfig, r.code)
			assert.Contains(t, r.stderr, "pve: ")
		})
	}
}

func TestStatus(t *testing.T) {
	w := newWeb(t, power.Config{})
	r := pve(w.env(t, sessionA), "status")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, "status: running\n", r.stdout)
	assert.Equal(t, []string{"status"}, w.kh.Calls())
}

func TestRemoteExitCode(t *testing.T) {
	w := newWeb(t, power.Config{Policy: power.PolicyAllow})
	w.kh.result = power.Result{ExitCode: 4, Output: "VM 102 is locked (backup)"}
	r := pve(w.env(t, sessionA), "start")
	assert.Equal(t, 4, r.code)
	assert.Equal(t, "VM 102 is locked (backup)\n", r.stdout)
	assert.Contains(t, r.stderr, "exited with status 4")
}

func TestTruncatedOutputIsReported(t *testing.T) {
	w := newWeb(t, power.Config{})
	w.kh.result = power.Result{Output: "lots\n", Truncated: true}
	r := pve(w.env(t, sessionA), "forensics")
	assert.Equal(t, 0, r.code)
	assert.Contains(t, r.stderr, "truncated")
}

func TestApproval(t *testing.T) {
	tests := []struct {
		name    string
		approve bool
		code    int
		stderr  string
		calls   int
	}{
		{"approved", true, 0, "may wait for the operator", 1},
		{"denied", false, ExitDenied, "denied by the operator", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWeb(t, power.Config{Policy: power.PolicyApprove})
			done := pveAsync(w.env(t, sessionA), "reset")
			id := waitPending(t, w)
			require.NoError(t, w.svc.Resolve(sessionA, id, tc.approve))
			r := waitRun(t, done)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.stderr)
			assert.Len(t, w.kh.Calls(), tc.calls)
		})
	}
}

func TestRefusals(t *testing.T) {
	tests := []struct {
		name   string
		cfg    power.Config
		err    error
		verb   string
		code   int
		stderr string
		calls  int
	}{
		{"policy-deny", power.Config{Policy: power.PolicyDeny}, nil, "cycle", ExitRefused, "cycle refused", 0},
		{"expired", power.Config{ApprovalTimeout: time.Millisecond}, nil, "stop", ExitExpired, "approval expired", 0},
		{"timeout", power.Config{}, &ipc.StatusError{Status: 504, Message: "timed out after 120s"}, "status", ExitTimeout, "timed out", 1},
		{"keyholder-down", power.Config{}, power.ErrUnreachable, "status", ExitKeyholderDown, "keyholder down", 1},
		{"busy", power.Config{Policy: power.PolicyAllow}, &ipc.StatusError{Status: 409, Message: "busy"}, "reset", ExitBusy, "another mutating verb", 1},
		{"host-key", power.Config{}, &ipc.StatusError{Status: 502, Message: "host key mismatch"}, "status", ExitSSH, "host key mismatch", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWeb(t, tc.cfg)
			w.kh.err = tc.err
			r := pve(w.env(t, sessionA), tc.verb)
			assert.Equal(t, tc.code, r.code, r.stderr)
			assert.Contains(t, r.stderr, tc.stderr)
			assert.Empty(t, r.stdout)
			assert.Len(t, w.kh.Calls(), tc.calls)
		})
	}
}

func TestTokenRejected(t *testing.T) {
	w := newWeb(t, power.Config{Policy: power.PolicyAllow})
	dead, revoke := w.tokens.Issue(sessionA)
	revoke()
	live := w.env(t, sessionA)
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"finished-turn", map[string]string{EnvURL: w.url, EnvToken: dead}},
		{"other-session", map[string]string{EnvURL: w.url, EnvToken: live[EnvToken], EnvSession: sessionB}},
		{"made-up", map[string]string{EnvURL: w.url, EnvToken: strings.Repeat("x", 43)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := pve(tc.env, "status")
			assert.Equal(t, ExitTokenRejected, r.code)
			assert.Contains(t, r.stderr, "turn token rejected")
			assert.NotContains(t, r.stderr, tc.env[EnvToken])
		})
	}
	assert.Empty(t, w.kh.Calls(), "the keyholder saw nothing")
}

func TestWebUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	r := pve(map[string]string{EnvURL: "http://" + addr, EnvToken: "x"}, "status")
	assert.Equal(t, ExitWeb, r.code)
	assert.Contains(t, r.stderr, "cannot reach breakglass")
}

func TestGivesUpAfterTheWait(t *testing.T) {
	w := newWeb(t, power.Config{})
	w.kh.block = make(chan struct{})
	defer close(w.kh.block)
	env := w.env(t, sessionA)
	env[EnvWait] = "1"
	r := pve(env, "status")
	assert.Equal(t, ExitTimeout, r.code)
	assert.Contains(t, r.stderr, "timed out after 1s")
}

// A web answering with a redirect must not get pve to send its token
// anywhere else.
func TestNeverFollowsRedirects(t *testing.T) {
	var leaked atomic.Int64
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		leaked.Add(1)
	}))
	defer elsewhere.Close()
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	r := pve(map[string]string{EnvURL: redirector.URL, EnvToken: "secret-token"}, "status")
	assert.Equal(t, ExitWeb, r.code)
	assert.Zero(t, leaked.Load())
	assert.NotContains(t, r.stderr, "secret-token")
}

func TestExitCodesAreDistinct(t *testing.T) {
	codes := []int{ExitUsage, ExitConfig, ExitRefused, ExitDenied, ExitExpired, ExitTimeout, ExitKeyholderDown, ExitTokenRejected, ExitBusy, ExitSSH, ExitWeb}
	seen := map[int]bool{0: true}
	for _, c := range codes {
		assert.False(t, seen[c], "exit code %d used twice", c)
		seen[c] = true
	}
}

// The environment the web builds for a turn is the one pve reads.
func TestTurnEnv(t *testing.T) {
	w := newWeb(t, power.Config{})
	kv, revoke := w.tokens.TurnEnv(sessionA, w.url, power.Config{}.MaxWait()+time.Minute)
	env := map[string]string{}
	for _, e := range kv {
		k, v, ok := strings.Cut(e, "=")
		require.True(t, ok, e)
		env[k] = v
	}
	assert.Equal(t, "540", env[EnvWait], "the approval wait (5 min), the verb backstop (3 min) and a minute")
	r := pve(env, "status")
	assert.Equal(t, 0, r.code, r.stderr)
	revoke()
	r = pve(env, "status")
	assert.Equal(t, ExitTokenRejected, r.code, "the token dies with the turn")
	assert.Len(t, w.kh.Calls(), 1)
}

// TestUnixSocket: pve reaches the web over its agent socket
// (unix:///…/pve.sock), as every turn does: no TCP path is needed.
func TestUnixSocket(t *testing.T) {
	w := newWeb(t, power.Config{})
	dir, err := os.MkdirTemp("", "pve")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "pve.sock")
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	srv := &http.Server{Handler: api.OpenHandler(w.svc.AgentRoutes()), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })

	kv, revoke := w.tokens.TurnEnv(sessionA, "unix://"+sock, time.Minute)
	env := map[string]string{}
	for _, e := range kv {
		k, v, _ := strings.Cut(e, "=")
		env[k] = v
	}
	got := pve(env, "status")
	assert.Equal(t, 0, got.code, got.stderr)
	assert.Len(t, w.kh.Calls(), 1)
	revoke()
	got = pve(env, "status")
	assert.Equal(t, ExitTokenRejected, got.code, "the socket accepts nothing but a live turn token")

	for _, bad := range []string{"unix://host/x.sock", "unix:relative.sock", "unix:///x.sock?q=1"} {
		env[EnvURL] = bad
		assert.Equal(t, ExitConfig, pve(env, "status").code, bad)
	}
	env[EnvURL] = "unix://" + filepath.Join(dir, "absent.sock")
	tok, revoke2 := w.tokens.Issue(sessionA)
	defer revoke2()
	env[EnvToken] = tok
	got = pve(env, "status")
	assert.Equal(t, ExitWeb, got.code)
	assert.Contains(t, got.stderr, "absent.sock")
}
