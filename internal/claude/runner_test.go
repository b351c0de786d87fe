package claude

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/agents"
	"breakglass/internal/agenthome"
	"breakglass/internal/event"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/uuid"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goleak: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := testbin.ModuleRoot()
	require.NoError(t, err)
	return dir
}

// fakeClaude builds testdata/fakeclaude: only for output the real CLI
// cannot produce (lines that are not stream-json).
func fakeClaude(t *testing.T) string {
	t.Helper()
	return filepath.Join(testbin.Build(t, "breakglass/internal/claude/testdata/fakeclaude"), "fakeclaude")
}

// testEnviron is the ambient environment of the tests' runners; the entries
// that must not pass are there to prove the filter.
func testEnviron(baseURL string) []string {
	return []string{
		"PATH=" + os.Getenv("PATH"),
		"ANTHROPIC_BASE_URL=" + baseURL,
		"ANTHROPIC_API_KEY=test",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
		"DISABLE_TELEMETRY=1",
		"DISABLE_AUTOUPDATER=1",
		"CLAUDECODE=1",
		"HOME=/root",
		"SECRET_TOKEN=must-not-pass",
	}
}

type harness struct {
	runner *Runner
	home   string
	binDir string
	dir    string
	double *apidouble.Server
	// mu protects the following.
	mu       sync.Mutex
	pgids    []int
	environs [][]string // claude's own environment, per process
	reg      *prometheus.Registry
}

type harnessOpt func(*Config)

func newHarness(t *testing.T, script []apidouble.Turn, opts ...harnessOpt) *harness {
	t.Helper()
	d, err := apidouble.New(apidouble.Config{Script: script})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	h := &harness{dir: t.TempDir(), double: d, reg: prometheus.NewRegistry()}
	paths, err := agenthome.Prepare(agenthome.Config{
		Dir:       filepath.Join(t.TempDir(), "agent"),
		DevVMHost: "127.0.0.1",
		DevVMPort: 1, // never dialled: the tests' tools do not use ssh
	})
	require.NoError(t, err)
	h.home, h.binDir = filepath.Join(t.TempDir(), "home"), paths.BinDir
	require.NoError(t, os.MkdirAll(filepath.Join(h.home, ".claude", "agents"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(h.home, ".claude", "agents", "breakglass.md"), agents.Breakglass, 0o600))
	cfg := Config{
		Binary:  testbin.Claude(t),
		Home:    h.home,
		BinDir:  h.binDir,
		Environ: testEnviron(d.URL()),
		Logger:  hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Debug}),
		Started: func(pgid int) {
			environ, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pgid), "environ"))
			h.mu.Lock()
			defer h.mu.Unlock()
			h.pgids = append(h.pgids, pgid)
			h.environs = append(h.environs, strings.Split(string(environ), "\x00"))
		},
		Registerer: h.reg,
		KillGrace:  3 * time.Second,
	}
	for _, o := range opts {
		o(&cfg)
	}
	h.runner, err = New(cfg)
	require.NoError(t, err)
	return h
}

// lines is how many stdout lines of kind k the runner counted.
func (h *harness) lines(k LineKind) float64 {
	return testutil.ToFloat64(h.runner.metrics.lines.WithLabelValues(string(k)))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (h *harness) run(ctx context.Context, turn Turn) (Outcome, []event.Event) {
	var evs []event.Event
	if turn.Dir == "" {
		turn.Dir = h.dir
	}
	if turn.Permit == nil {
		turn.Permit = autopilot
	}
	out := h.runner.Run(ctx, turn, func(e event.Event) { evs = append(evs, e) })
	return out, evs
}

// autopilot allows every permission request, as a session in autopilot
// mode does: the tests that are not about permissions never wait on one.
func autopilot(context.Context, PermissionRequest) PermissionAnswer {
	return PermissionAnswer{Allow: true}
}

// assertGroupsGone checks that no process of any claude group is left.
func (h *harness) assertGroupsGone(t *testing.T) {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	require.NotEmpty(t, h.pgids, "a claude process was started")
	for _, pgid := range h.pgids {
		assert.ErrorIs(t, syscall.Kill(-pgid, 0), syscall.ESRCH, "process group %d still has processes", pgid)
	}
}

// processGone reports whether pid no longer runs: no such process, or a
// zombie waiting for init to reap it.
func processGone(pid int) bool {
	if errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) {
		return true
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i > 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// kinds folds runs of the same event type into one: the shape of a turn.
func kinds(evs []event.Event) []event.Type {
	var out []event.Type
	for _, e := range evs {
		if len(out) > 0 && out[len(out)-1] == e.Type {
			continue
		}
		out = append(out, e.Type)
	}
	return out
}

// texts returns the joined text of each run of text events.
func texts(t *testing.T, evs []event.Event) []string {
	var out []string
	prev := event.Type("")
	for _, e := range evs {
		if e.Type == event.Text {
			var d event.TextData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			if prev != event.Text {
				out = append(out, "")
			}
			out[len(out)-1] += d.Delta
		}
		prev = e.Type
	}
	return out
}

func dataOf[T any](t *testing.T, evs []event.Event, typ event.Type) []T {
	t.Helper()
	var out []T
	for _, e := range evs {
		if e.Type == typ {
			var d T
			require.NoError(t, json.Unmarshal(e.Data, &d))
			out = append(out, d)
		}
	}
	return out
}

func TestRealTurnWithTool(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Text("Checking uptime now. "), apidouble.Bash("echo hello-from-tool")),
		apidouble.AfterToolResult(apidouble.Text("The devvm looks healthy.")),
	})
	id := uuid.New()
	out, evs := h.run(t.Context(), Turn{SessionID: id, Prompt: "is the devvm up?"})

	assert.Equal(t, Outcome{Outcome: event.OutcomeSuccess, ExitCode: 0}, out)
	assert.Equal(t, []event.Type{
		event.Session, event.Status, event.Text, event.Tool, event.ToolResult, event.Status, event.Text, event.Result,
	}, kinds(evs))
	assert.Equal(t, []string{"Checking uptime now. ", "The devvm looks healthy."}, texts(t, evs), "each text once")
	assert.Greater(t, len(dataOf[event.TextData](t, evs, event.Text)), 2, "text streamed in several deltas")

	sess := dataOf[event.SessionData](t, evs, event.Session)
	require.Len(t, sess, 1)
	assert.Equal(t, id, sess[0].SessionID)
	assert.ElementsMatch(t, []string{"Bash", "Read", "Grep", "Glob"}, sess[0].Tools)

	tools := dataOf[event.ToolData](t, evs, event.Tool)
	require.Len(t, tools, 1)
	assert.Equal(t, "Bash", tools[0].Name)
	assert.Equal(t, "echo hello-from-tool", tools[0].Input)
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	assert.Equal(t, tools[0].ToolUseID, results[0].ToolUseID)
	assert.Equal(t, "hello-from-tool", results[0].Output)
	assert.False(t, results[0].IsError)

	res := dataOf[event.ResultData](t, evs, event.Result)
	require.Len(t, res, 1)
	assert.Equal(t, "success", res[0].Subtype)
	assert.Equal(t, "The devvm looks healthy.", res[0].Text)
	assert.Equal(t, 2, res[0].NumTurns)

	reqs := h.double.MessageRequests()
	require.Len(t, reqs, 2)
	require.Len(t, reqs[1].ToolResults(), 1)
	assert.Equal(t, "hello-from-tool", reqs[1].ToolResults()[0].Text, "the tool's real output went back to the API")
	assert.Contains(t, strings.Join(reqs[0].UserTexts(), "\n"), "is the devvm up?")

	assert.Zero(t, h.lines(LineInvalid))
	assert.Positive(t, h.lines(LineKnown))
	assert.Positive(t, testutil.ToFloat64(h.runner.metrics.cost), "cost reported")
	h.assertGroupsGone(t)
}

func TestRealResume(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Text("first answer")),
		apidouble.T(apidouble.Text("second answer")),
	})
	id := uuid.New()
	out, _ := h.run(t.Context(), Turn{SessionID: id, Prompt: "first prompt"})
	require.Equal(t, event.OutcomeSuccess, out.Outcome)

	otherDir := t.TempDir() // --resume works from another folder too
	out, evs := h.run(t.Context(), Turn{SessionID: id, Prompt: "second prompt", Resume: true, Dir: otherDir})
	require.Equal(t, event.OutcomeSuccess, out.Outcome)
	assert.Equal(t, []string{"second answer"}, texts(t, evs))

	reqs := h.double.MessageRequests()
	require.Len(t, reqs, 2)
	user := strings.Join(reqs[1].UserTexts(), "\n")
	assert.Contains(t, user, "first prompt", "earlier prompt sent on resume")
	assert.Contains(t, user, "second prompt")
	assert.Contains(t, reqs[1].AssistantTexts(), "first answer", "earlier answer sent on resume")
}

func TestRealSessionFlagSwap(t *testing.T) {
	t.Run("resume-unknown", func(t *testing.T) {
		h := newHarness(t, []apidouble.Turn{apidouble.T(apidouble.Text("fresh start"))})
		out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "hello", Resume: true})
		assert.Equal(t, event.OutcomeSuccess, out.Outcome)
		assert.Equal(t, []string{"fresh start"}, texts(t, evs))
		assert.Empty(t, dataOf[event.ErrorData](t, evs, event.Error), "the refused attempt leaves no error")
		assert.Len(t, dataOf[event.ResultData](t, evs, event.Result), 1, "the refused attempt's result is dropped")
		h.mu.Lock()
		assert.Len(t, h.pgids, 2, "two attempts")
		h.mu.Unlock()
	})
	t.Run("session-id-in-use", func(t *testing.T) {
		h := newHarness(t, []apidouble.Turn{apidouble.T(apidouble.Text("one")), apidouble.T(apidouble.Text("two"))})
		id := uuid.New()
		out, _ := h.run(t.Context(), Turn{SessionID: id, Prompt: "hello"})
		require.Equal(t, event.OutcomeSuccess, out.Outcome)
		out, evs := h.run(t.Context(), Turn{SessionID: id, Prompt: "again"})
		assert.Equal(t, event.OutcomeSuccess, out.Outcome)
		assert.Equal(t, []string{"two"}, texts(t, evs))
		reqs := h.double.MessageRequests()
		require.Len(t, reqs, 2)
		assert.Contains(t, reqs[1].AssistantTexts(), "one", "the retry resumed the conversation")
	})
}

func TestRealCancel(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		// The tool leaves a background process in the group: cancel must
		// take it down too.
		apidouble.T(apidouble.Bash("tail -f /dev/null >/dev/null 2>&1 & echo $!")),
		apidouble.AfterToolResult(apidouble.Text("thinking "), apidouble.Delay(time.Hour), apidouble.Text("never")),
		apidouble.T(apidouble.Text("resumed fine")),
	})
	id := uuid.New()
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	type result struct {
		out Outcome
		evs []event.Event
	}
	done := make(chan result, 1)
	sawText := make(chan struct{})
	go func() {
		var evs []event.Event
		once := sync.Once{}
		out := h.runner.Run(ctx, Turn{SessionID: id, Prompt: "start something slow", Dir: h.dir, Permit: autopilot}, func(e event.Event) {
			evs = append(evs, e)
			if e.Type == event.Text {
				once.Do(func() { close(sawText) })
			}
		})
		done <- result{out, evs}
	}()
	require.NoError(t, h.double.WaitMessages(t.Context(), 2), "the slow request arrived")
	select {
	case <-sawText:
	case r := <-done:
		t.Fatalf("turn ended before streaming: %+v", r.out)
	}
	start := time.Now()
	cancel(ErrCancelled)
	r := <-done
	elapsed := time.Since(start)

	assert.Equal(t, event.OutcomeCancelled, r.out.Outcome)
	assert.Less(t, elapsed, 5*time.Second, "cancel took %v", elapsed)
	h.assertGroupsGone(t)
	results := dataOf[event.ToolResultData](t, r.evs, event.ToolResult)
	require.Len(t, results, 1)
	pid, err := strconv.Atoi(strings.TrimSpace(results[0].Output))
	require.NoError(t, err, "tool output is the background pid: %q", results[0].Output)
	assert.True(t, processGone(pid), "the tool's background process %d outlived the turn", pid)
	for _, d := range dataOf[event.TextData](t, r.evs, event.Text) {
		assert.NotContains(t, d.Delta, "Request interrupted", "not chat text")
	}
	assert.Empty(t, dataOf[event.ErrorData](t, r.evs, event.Error), "a cancel is not an error")
	assert.Equal(t, []string{"thinking "}, texts(t, r.evs), "text streamed before the cancel is kept")

	out, evs := h.run(t.Context(), Turn{SessionID: id, Prompt: "are you there?", Resume: true})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	assert.Equal(t, []string{"resumed fine"}, texts(t, evs))
	reqs := h.double.MessageRequests()
	assert.Contains(t, strings.Join(reqs[len(reqs)-1].UserTexts(), "\n"), "start something slow", "same conversation")
}

func TestRealTimeout(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{apidouble.T(apidouble.Delay(time.Hour), apidouble.Text("never"))})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	out, evs := h.run(ctx, Turn{SessionID: uuid.New(), Prompt: "slow"})
	assert.Equal(t, event.OutcomeTimeout, out.Outcome)
	errs := dataOf[event.ErrorData](t, evs, event.Error)
	require.NotEmpty(t, errs)
	assert.Contains(t, errs[len(errs)-1].Message, "time limit")
	h.assertGroupsGone(t)
}

func TestRealAPIError(t *testing.T) {
	// A 400 is not retried: claude gives up at once, with a synthetic
	// assistant message, a failed result and exit status 1.
	h := newHarness(t, []apidouble.Turn{apidouble.T(apidouble.Status(400))})
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "hi"})
	assert.Equal(t, event.OutcomeError, out.Outcome)
	assert.NotZero(t, out.ExitCode)
	assert.Empty(t, texts(t, evs), "the API failure is not chat text")
	errs := dataOf[event.ErrorData](t, evs, event.Error)
	require.NotEmpty(t, errs)
	assert.Contains(t, errs[0].Message, "400")
	res := dataOf[event.ResultData](t, evs, event.Result)
	require.Len(t, res, 1)
	assert.True(t, res[0].IsError)
	h.assertGroupsGone(t)
}

func TestRealUnreachableAPI(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedURL := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close())

	h := newHarness(t, nil, func(c *Config) {
		c.Environ = testEnviron(closedURL)
		c.RetryCutoff = 2 * time.Second
	})
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "hi"})
	assert.Equal(t, event.OutcomeError, out.Outcome)
	st := dataOf[event.StatusData](t, evs, event.Status)
	var retrying []event.StatusData
	for _, s := range st {
		if s.State == event.StateRetrying {
			retrying = append(retrying, s)
		}
	}
	require.NotEmpty(t, retrying, "status(retrying) events")
	assert.Equal(t, 1, retrying[0].Attempt)
	assert.Positive(t, retrying[0].MaxRetries)
	assert.Positive(t, retrying[0].RetryInMS)
	errs := dataOf[event.ErrorData](t, evs, event.Error)
	require.NotEmpty(t, errs)
	assert.Contains(t, errs[len(errs)-1].Message, "unreachable")
	h.assertGroupsGone(t)
}

func TestRealPromptIsNeverAnOption(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{apidouble.T(apidouble.Text("ok"))})
	out, _ := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "--help"})
	assert.Equal(t, event.OutcomeSuccess, out.Outcome)
	reqs := h.double.MessageRequests()
	require.Len(t, reqs, 1)
	assert.Contains(t, reqs[0].UserTexts(), "--help")
}

func TestNotStreamJSON(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		want    string
		wantRaw int
	}{
		{"garbage", "garbage", "not stream-json", 0},
		{"garbage-exit", "garbage-exit", "not stream-json", 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil, func(c *Config) { c.Binary = fakeClaude(t) })
			out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "hi", Env: []string{"FAKECLAUDE_MODE=" + tc.mode}})
			assert.Equal(t, event.OutcomeError, out.Outcome)
			assert.Equal(t, tc.wantRaw, out.ExitCode)
			errs := dataOf[event.ErrorData](t, evs, event.Error)
			require.NotEmpty(t, errs)
			assert.Contains(t, errs[0].Message, tc.want)
			assert.Positive(t, h.lines(LineInvalid))
		})
	}
}

func TestMissingBinary(t *testing.T) {
	tests := []struct {
		name   string
		binary string
	}{
		{"path", "/nonexistent/claude"},
		{"name-not-on-path", "claude-not-installed-anywhere"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Config{Binary: tc.binary, Home: t.TempDir(), Environ: []string{"PATH=/nonexistent"}})
			require.NoError(t, err)
			var evs []event.Event
			out := r.Run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "hi", Dir: t.TempDir()}, func(e event.Event) { evs = append(evs, e) })
			assert.Equal(t, Outcome{Outcome: event.OutcomeError, ExitCode: -1}, out)
			errs := dataOf[event.ErrorData](t, evs, event.Error)
			require.Len(t, errs, 1)
			assert.Contains(t, errs[0].Message, "npm install -g @anthropic-ai/claude-code@2.1.328")
		})
	}
}

func TestRunRefusesBadSessionID(t *testing.T) {
	r, err := New(Config{Binary: "/bin/false", Home: t.TempDir()})
	require.NoError(t, err)
	for _, id := range []string{"", "../x", "not-a-uuid", "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a1", "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11\n", "--help"} {
		var evs []event.Event
		out := r.Run(t.Context(), Turn{SessionID: id, Prompt: "x", Dir: t.TempDir()}, func(e event.Event) { evs = append(evs, e) })
		assert.Equal(t, event.OutcomeError, out.Outcome, "%q", id)
		require.Len(t, evs, 1)
		assert.Equal(t, event.Error, evs[0].Type)
	}
}

// TestRealTurnEnvironment: the agent's tools see the agent's HOME, its bin
// dir first on PATH (so `ssh` is the wrapper), the turn's own variables,
// and nothing of the ambient environment outside the allowlist.
func TestRealTurnEnvironment(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{
		apidouble.T(apidouble.Bash(`echo "home=$HOME"; echo "ssh=$(command -v ssh)"; echo "pve=$(command -v pve)"; echo "turn=$TURN_VAR"; echo "secret=${SECRET_TOKEN:-unset}"; echo "claudecode=${CLAUDECODE:-unset}"`)),
		apidouble.AfterToolResult(apidouble.Text("done")),
	})
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "env", Env: []string{"TURN_VAR=per-turn", "HOME=/etc", "PATH=/tmp"}})
	require.Equal(t, event.OutcomeSuccess, out.Outcome)
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	got := results[0].Output
	assert.Contains(t, got, "home="+h.home+"\n")
	assert.Contains(t, got, "ssh="+filepath.Join(h.binDir, "ssh")+"\n")
	assert.Contains(t, got, "pve="+filepath.Join(h.binDir, "pve")+"\n")
	assert.Contains(t, got, "turn=per-turn\n")
	assert.Contains(t, got, "secret=unset\n")

	h.mu.Lock()
	defer h.mu.Unlock()
	require.Len(t, h.environs, 1)
	var keys []string
	for _, kv := range h.environs[0] {
		if k, _, ok := strings.Cut(kv, "="); ok {
			keys = append(keys, k)
		}
	}
	assert.ElementsMatch(t, []string{
		"PATH", "HOME", "ANTHROPIC_BASE_URL", "ANTHROPIC_API_KEY", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC",
		"DISABLE_TELEMETRY", "DISABLE_AUTOUPDATER", "TURN_VAR", MarkVar, "BASH_DEFAULT_TIMEOUT_MS", "BASH_MAX_TIMEOUT_MS",
	}, keys, "claude's environment is the allowlist, HOME, the Bash time limits, the turn's variables and the mark; never CLAUDECODE")
}

// TestKillAfterGrace: a claude that ignores SIGINT is SIGKILLed after the
// grace period, and the turn still ends cancelled.
func TestKillAfterGrace(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) {
		c.Binary = fakeClaude(t)
		c.KillGrace = 200 * time.Millisecond
	})
	ctx, cancel := context.WithCancelCause(t.Context())
	started := make(chan struct{})
	done := make(chan Outcome, 1)
	go func() {
		var once sync.Once
		done <- h.runner.Run(ctx, Turn{SessionID: uuid.New(), Prompt: "x", Dir: h.dir, Permit: autopilot, Env: []string{"FAKECLAUDE_MODE=ignore-sigint"}},
			func(e event.Event) {
				if e.Type == event.Session {
					once.Do(func() { close(started) })
				}
			})
	}()
	<-started
	cancel(ErrCancelled)
	out := <-done
	assert.Equal(t, Outcome{Outcome: event.OutcomeCancelled, ExitCode: -1}, out)
	h.assertGroupsGone(t)
}

// TestRealInitWatchdog: a claude that prints no system/init in time is
// stopped with an error (the watchdog is set far below the CLI's start-up
// time).
func TestRealInitWatchdog(t *testing.T) {
	h := newHarness(t, []apidouble.Turn{apidouble.T(apidouble.Text("late"))}, func(c *Config) {
		c.InitTimeout = time.Millisecond
	})
	out, evs := h.run(t.Context(), Turn{SessionID: uuid.New(), Prompt: "hi"})
	assert.Equal(t, event.OutcomeError, out.Outcome)
	errs := dataOf[event.ErrorData](t, evs, event.Error)
	require.NotEmpty(t, errs)
	assert.Contains(t, errs[len(errs)-1].Message, "did not start")
	h.assertGroupsGone(t)
}
