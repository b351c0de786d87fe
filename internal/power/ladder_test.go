package power

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/verbs"
)

// TestGuestExecApprovalShowsTheArgv: the agent's guest-exec waits for an
// approval that carries its exact argv, and that argv is what the keyholder
// is asked to run.
func TestGuestExecApprovalShowsTheArgv(t *testing.T) {
	f := newFixture(t, Config{})
	argv := []string{"systemctl", "restart", "ssh", "$(id) ; rm -rf /"}
	done := make(chan error, 1)
	go func() {
		_, err := f.svc.RunArgs(context.Background(), sessionA, "guest-exec", argv, agent)
		done <- err
	}()
	pending := f.tr.waitApproval(t, event.ApprovalPending)
	assert.Equal(t, "guest-exec", pending.Verb)
	assert.Equal(t, argv, pending.Args, "the operator approves the argv he reads")
	assert.Empty(t, f.kh.Calls(), "nothing runs before the approval")
	require.NoError(t, f.svc.Resolve(sessionA, pending.ApprovalID, true))
	require.NoError(t, <-done)
	assert.Equal(t, []fakeCall{{verb: "guest-exec", actor: "agent:" + sessionA, args: argv}}, f.kh.Calls())
	var last event.VerbData
	for _, e := range f.tr.Events(sessionA) {
		if e.Type == event.Verb {
			last = decode[event.VerbData](t, e)
		}
	}
	assert.Equal(t, argv, last.Args, "the transcript shows what ran")
}

// TestArgsOnlyForGuestExec: args on another verb, an argv outside the
// limits, or guest-exec without one are refused before the keyholder.
func TestArgsOnlyForGuestExec(t *testing.T) {
	f := newFixture(t, Config{Policy: PolicyAllow})
	for _, tc := range []struct {
		name, verb string
		args       []string
	}{
		{"status", "status", []string{"x"}},
		{"reset-empty", "reset", []string{}},
		{"guest-exec-none", "guest-exec", nil},
		{"guest-exec-nul", "guest-exec", []string{"echo", "a\x00"}},
		{"guest-exec-17", "guest-exec", strings.Split(strings.Repeat("a ", 16)+"a", " ")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.RunArgs(context.Background(), sessionA, tc.verb, tc.args, alice)
			require.ErrorIs(t, err, verbs.ErrArgs)
		})
	}
	assert.Empty(t, f.kh.Calls())
}

// TestMountedArgsHostileBodies: the operator route's bodies with args.
func TestMountedArgsHostileBodies(t *testing.T) {
	m := mount(t, Config{}, nil)
	cases := []struct {
		name, verb, body string
		want             int
	}{
		{"args-on-status", "status", `{"args":["x"]}`, http.StatusBadRequest},
		{"args-on-screenshot", "screenshot", `{"args":["-o","/tmp/x"]}`, http.StatusBadRequest},
		{"guest-exec-no-args", "guest-exec", `{}`, http.StatusBadRequest},
		{"guest-exec-null-elem", "guest-exec", `{"args":["id",null]}`, http.StatusBadRequest},
		{"guest-exec-number", "guest-exec", `{"args":[1]}`, http.StatusBadRequest},
		{"guest-exec-string", "guest-exec", `{"args":"id"}`, http.StatusBadRequest},
		{"guest-exec-over-16k", "guest-exec", `{"args":["` + strings.Repeat("x", 17<<10) + `"]}`, http.StatusRequestEntityTooLarge},
		{"status-over-4k", "status", `{"session_id":"` + strings.Repeat("a", 5<<10) + `"}`, http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			assert.Equal(t, c.want, m.post(t, "/api/vm/"+c.verb, browser, c.body))
		})
	}
	assert.Empty(t, m.kh.Calls())
	// Within guest-exec's own 16 KiB, a body over 4 KiB is fine.
	big := `"` + strings.Repeat(`\"`, 500) + `"` // 500 bytes, 1002 in JSON
	body := `{"session_id":"` + m.session + `","args":["e",` + strings.TrimSuffix(strings.Repeat(big+",", 8), ",") + `]}`
	require.Greater(t, len(body), 4<<10)
	assert.Equal(t, http.StatusOK, m.post(t, "/api/vm/guest-exec", browser, body))
	require.Len(t, m.kh.Calls(), 1)
	assert.Len(t, m.kh.Calls()[0].args, 9)
}

// TestHealthWithinBudgetWhenTheHostHangs: a keyholder that never answers
// (a wedged host) and an ssh check that hangs cost the ladder its budget,
// no more, and each rung says so; a second caller within 5 s gets the same
// answer without a second check.
func TestHealthWithinBudgetWhenTheHostHangs(t *testing.T) {
	kh := &fakeKeyholder{block: make(chan struct{})}
	defer close(kh.block)
	sshCalls := 0
	f := newFixture(t, Config{})
	svc, err := New(Config{Keyholder: kh, Transcript: f.tr, HealthBudget: 300 * time.Millisecond,
		SSH: func(ctx context.Context) error { sshCalls++; <-ctx.Done(); return ctx.Err() }})
	require.NoError(t, err)
	start := time.Now()
	h, err := svc.Health(context.Background())
	require.NoError(t, err)
	took := time.Since(start)
	assert.GreaterOrEqual(t, took, 300*time.Millisecond)
	assert.Less(t, took, 3*time.Second, "the budget bounds the ladder")
	assert.False(t, h.PVE.OK)
	assert.Equal(t, "no answer within 300ms", h.PVE.Error)
	assert.Equal(t, "unknown", h.VM.State)
	assert.Equal(t, "no answer within 300ms", h.GuestAgent.Error)
	assert.Equal(t, "no answer within 300ms", h.SSH.Error)
	assert.Len(t, kh.Calls(), 2, "status and guest, side by side")

	again, err := svc.Health(context.Background())
	require.NoError(t, err)
	assert.Equal(t, h, again, "cached")
	assert.Len(t, kh.Calls(), 2, "no second check within 5 s")
	assert.Equal(t, 1, sshCalls)
	assert.Empty(t, f.tr.Events(sessionA), "the ladder writes no transcript")
}

// TestHealthReadsStateAndLock: the rungs from the verbs' answers.
func TestHealthReadsStateAndLock(t *testing.T) {
	kh := &fakeKeyholder{}
	f := newFixture(t, Config{})
	svc, err := New(Config{Keyholder: kh, Transcript: f.tr, SSH: func(context.Context) error { return nil }})
	require.NoError(t, err)
	h, err := svc.Health(context.Background())
	require.NoError(t, err)
	assert.True(t, h.PVE.OK)
	assert.True(t, h.GuestAgent.OK)
	assert.True(t, h.SSH.OK)
	var calls []string
	for _, c := range kh.Calls() {
		calls = append(calls, c.verb+" "+c.actor)
	}
	assert.ElementsMatch(t, []string{"status web:health", "guest web:health"}, calls)
}
