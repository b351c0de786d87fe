package pvecmd

// The agent's side end to end: the real claude CLI, driven by a scripted
// Messages API (apidouble), runs `pve …` in its Bash tool; pve is this test
// binary on the agent's PATH; the web's verb path (package power) with the real
// session manager as transcript and the per-turn token from TurnEnv; the
// real keyholder; the simulated Proxmox host.

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/power"
	"breakglass/internal/session"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/testbin"
)

const testAgent = `---
name: breakglass
description: test agent
tools: Bash, Read, Grep, Glob
---
You are a test agent.
`

// agentWorld is a session manager running real claude turns whose `pve`
// reaches the web's verb path.
type agentWorld struct {
	*proxmox
	web    *web
	mgr    *session.Manager
	double *apidouble.Server
}

func newAgentWorld(t *testing.T, cfg power.Config, script []apidouble.Turn) *agentWorld {
	t.Helper()
	double, err := apidouble.New(apidouble.Config{Script: script})
	require.NoError(t, err)
	t.Cleanup(double.Close)

	home, bin := t.TempDir(), t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(home, ".claude", "agents"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(home, ".claude", "agents", "breakglass.md"), []byte(testAgent), 0o600))
	self, err := os.Executable()
	require.NoError(t, err)
	require.NoError(t, os.Symlink(self, filepath.Join(bin, "pve")))

	runner, err := claude.New(claude.Config{
		Binary: testbin.Claude(t),
		Home:   home,
		BinDir: bin,
		Environ: []string{
			"PATH=" + os.Getenv("PATH"),
			"ANTHROPIC_BASE_URL=" + double.URL(),
			"ANTHROPIC_API_KEY=test",
			"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1",
			"DISABLE_TELEMETRY=1",
			"DISABLE_AUTOUPDATER=1",
		},
		Logger:    hclog.New(&hclog.LoggerOptions{Output: testWriter{t}, Level: hclog.Info}),
		KillGrace: 3 * time.Second,
	})
	require.NoError(t, err)

	w := &agentWorld{proxmox: startProxmox(t), double: double}
	w.mgr, err = session.New(session.Config{
		Dir:    t.TempDir(),
		Runner: runner,
		Mode:   claude.ModeAutopilot, // nobody answers permission questions here
		TurnEnv: func(id string) ([]string, func()) {
			return w.web.tokens.TurnEnv(id, w.web.url, cfg.MaxWait()+time.Minute)
		},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = w.mgr.Close() })
	cfg.Keyholder, cfg.Transcript = w.client, w.mgr
	w.web = startWeb(t, cfg)
	return w
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// turn prompts the session and returns the turn's events up to done. When
// answer is set, it is called with each pending approval.
func (w *agentWorld) turn(t *testing.T, sessionID, prompt string, answer func(approvalID string)) []event.Event {
	t.Helper()
	info, err := w.mgr.Get(sessionID)
	require.NoError(t, err)
	sub, err := w.mgr.Attach(sessionID, info.LastEventID)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, w.mgr.Prompt(sessionID, prompt, "alice"))
	var out []event.Event
	deadline := time.After(90 * time.Second)
	for {
		select {
		case e, ok := <-sub.C:
			require.True(t, ok, "subscription dropped")
			out = append(out, e)
			if e.Type == event.Approval && answer != nil {
				var d event.ApprovalData
				require.NoError(t, json.Unmarshal(e.Data, &d))
				if d.State == event.ApprovalPending {
					answer(d.ApprovalID)
				}
			}
			if e.Type == event.Done {
				return out
			}
		case <-deadline:
			t.Fatalf("turn did not end within 90s; events so far: %v", types(out))
		}
	}
}

func types(es []event.Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, string(e.Type))
	}
	return out
}

func dataOf[T any](t *testing.T, es []event.Event, typ event.Type) []T {
	t.Helper()
	var out []T
	for _, e := range es {
		if e.Type == typ {
			var v T
			require.NoError(t, json.Unmarshal(e.Data, &v))
			out = append(out, v)
		}
	}
	return out
}

func approvalStates(t *testing.T, es []event.Event) []event.ApprovalState {
	var out []event.ApprovalState
	for _, d := range dataOf[event.ApprovalData](t, es, event.Approval) {
		out = append(out, d.State)
	}
	return out
}

func TestAgentPveStatusAndApprovedReset(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	w := newAgentWorld(t, power.Config{Policy: power.PolicyApprove}, []apidouble.Turn{
		apidouble.T(apidouble.Bash("pve status; printenv BREAKGLASS_PVE_TOKEN > " + tokenFile)),
		apidouble.AfterToolResult(apidouble.Text("The VM is running.")),
		apidouble.T(apidouble.Bash("pve reset")),
		apidouble.AfterToolResult(apidouble.Text("Reset done.")),
	})
	info, err := w.mgr.Create()
	require.NoError(t, err)

	// pve status: a verb event by the agent, the status in the tool result.
	evs := w.turn(t, info.ID, "is the vm up?", nil)
	verbsRun := dataOf[event.VerbData](t, evs, event.Verb)
	require.Len(t, verbsRun, 1, "events: %v", types(evs))
	assert.Equal(t, "status", verbsRun[0].Verb)
	assert.Equal(t, "agent", verbsRun[0].Actor)
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	assert.Contains(t, results[0].Output, "status: running")
	assert.Equal(t, event.OutcomeSuccess, dataOf[event.DoneData](t, evs, event.Done)[0].Outcome)

	// The turn is over: its token is dead.
	tok, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	r := pve(map[string]string{EnvURL: w.web.url, EnvToken: strings.TrimSpace(string(tok))}, "reset")
	assert.Equal(t, ExitTokenRejected, r.code, r.stderr)
	assert.Equal(t, []string{"qm status 102 --verbose"}, w.qmCalls())

	// pve reset under approve: pending, the operator approves, it runs.
	evs = w.turn(t, info.ID, "reset it", func(id string) {
		assert.NoError(t, w.web.svc.Resolve(info.ID, id, true))
	})
	assert.Equal(t, []event.ApprovalState{event.ApprovalPending, event.ApprovalApproved}, approvalStates(t, evs))
	verbsRun = dataOf[event.VerbData](t, evs, event.Verb)
	require.Len(t, verbsRun, 1)
	assert.Equal(t, "reset", verbsRun[0].Verb)
	assert.Equal(t, []string{"qm status 102 --verbose", "qm reset 102"}, w.qmCalls(), "the Proxmox double saw the reset")
	results = dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 1)
	assert.False(t, results[0].IsError, results[0].Output)
}

func TestAgentPveResetDeniedExpiredRefused(t *testing.T) {
	tests := []struct {
		name   string
		cfg    power.Config
		answer *bool
		states []event.ApprovalState
		want   string
	}{
		{"denied", power.Config{}, ptr(false), []event.ApprovalState{event.ApprovalPending, event.ApprovalDenied}, "denied by the operator"},
		{"expired", power.Config{ApprovalTimeout: 300 * time.Millisecond}, nil, []event.ApprovalState{event.ApprovalPending, event.ApprovalExpired}, "approval expired"},
		{"policy-deny", power.Config{Policy: power.PolicyDeny}, nil, nil, "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newAgentWorld(t, tc.cfg, []apidouble.Turn{
				apidouble.T(apidouble.Bash("pve reset")),
				apidouble.AfterToolResult(apidouble.Text("Could not reset.")),
			})
			info, err := w.mgr.Create()
			require.NoError(t, err)
			evs := w.turn(t, info.ID, "reset it", func(id string) {
				if tc.answer != nil {
					assert.NoError(t, w.web.svc.Resolve(info.ID, id, *tc.answer))
				}
			})
			assert.Equal(t, tc.states, approvalStates(t, evs))
			results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
			require.Len(t, results, 1)
			assert.True(t, results[0].IsError, "pve exits non-zero")
			assert.Contains(t, results[0].Output, tc.want)
			assert.Empty(t, w.qmCalls(), "nothing reached the Proxmox host")
			assert.Zero(t, w.sim.Connections())
		})
	}
}

func TestAgentPveResetAllowed(t *testing.T) {
	w := newAgentWorld(t, power.Config{Policy: power.PolicyAllow}, []apidouble.Turn{
		apidouble.T(apidouble.Bash("pve reset")),
		apidouble.AfterToolResult(apidouble.Text("Reset.")),
	})
	info, err := w.mgr.Create()
	require.NoError(t, err)
	evs := w.turn(t, info.ID, "reset it", func(string) { t.Error("no approval under allow") })
	assert.Empty(t, approvalStates(t, evs))
	assert.Equal(t, []string{"qm reset 102"}, w.qmCalls())
}

func ptr[T any](v T) *T { return &v }

// TestAgentPveScreenshotThenRead: the agent runs `pve screenshot`, which
// saves the VM's screen as a PNG in its folder and prints the path, and the
// CLI's Read tool opens that path as an image.
func TestAgentPveScreenshotThenRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "screenshot-1.png")
	w := newAgentWorld(t, power.Config{}, []apidouble.Turn{
		apidouble.T(apidouble.Bash("cd " + dir + " && pve screenshot")),
		apidouble.AfterToolResult(apidouble.ToolUse("Read", map[string]any{"file_path": path})),
		apidouble.AfterToolResult(apidouble.Text("The VM shows a login prompt.")),
	})
	info, err := w.mgr.Create()
	require.NoError(t, err)
	evs := w.turn(t, info.ID, "what is on the screen?", nil)

	verbsRun := dataOf[event.VerbData](t, evs, event.Verb)
	require.Len(t, verbsRun, 1, "events: %v", types(evs))
	assert.Equal(t, "screenshot", verbsRun[0].Verb)
	results := dataOf[event.ToolResultData](t, evs, event.ToolResult)
	require.Len(t, results, 2, "events: %v", types(evs))
	assert.False(t, results[0].IsError, results[0].Output)
	assert.Contains(t, results[0].Output, path, "pve prints the path")
	assert.False(t, results[1].IsError, "Read opened the PNG: %s", results[1].Output)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "\x89PNG"))

	// The Read result went back to the model as an image.
	reqs := w.double.MessageRequests()
	require.NotEmpty(t, reqs)
	last := string(reqs[len(reqs)-1].Body)
	assert.Contains(t, last, `"media_type":"image/png"`)
	assert.Equal(t, event.OutcomeSuccess, dataOf[event.DoneData](t, evs, event.Done)[0].Outcome)
}

// TestAgentPveGuestExecApprovalShowsArgv: `pve guest-exec -- argv…` waits
// for an approval carrying the exact argv; approved, the guest runs it.
func TestAgentPveGuestExecApprovalShowsArgv(t *testing.T) {
	w := newAgentWorld(t, power.Config{}, []apidouble.Turn{
		apidouble.T(apidouble.Bash(`pve guest-exec -- systemctl restart 'ssh'`)),
		apidouble.AfterToolResult(apidouble.Text("Restarted.")),
	})
	info, err := w.mgr.Create()
	require.NoError(t, err)
	var seen []string
	evs := w.turn(t, info.ID, "restart sshd", func(id string) {
		assert.NoError(t, w.web.svc.Resolve(info.ID, id, true))
	})
	for _, d := range dataOf[event.ApprovalData](t, evs, event.Approval) {
		if d.State == event.ApprovalPending {
			seen = d.Args
		}
	}
	assert.Equal(t, []string{"systemctl", "restart", "ssh"}, seen)
	assert.Equal(t, [][]string{{"systemctl", "restart", "ssh"}}, w.vm.GuestExecs())
}
