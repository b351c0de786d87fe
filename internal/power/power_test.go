package power

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/uuid"
	"breakglass/internal/verbs"
)

var agent = Actor{Kind: Agent}
var alice = Actor{Kind: Operator, Name: "alice"}

type runResult struct {
	res Result
	err error
}

// runAsync runs a verb in the background and returns where its result lands.
func runAsync(ctx context.Context, svc *Service, sessionID, verb string, a Actor) <-chan runResult {
	ch := make(chan runResult, 1)
	go func() {
		res, err := svc.Run(ctx, sessionID, verb, a)
		ch <- runResult{res, err}
	}()
	return ch
}

func wait(t *testing.T, ch <-chan runResult) runResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s")
		return runResult{}
	}
}

func TestApproveRunsTheVerb(t *testing.T) {
	f := newFixture(t, Config{})
	done := runAsync(context.Background(), f.svc, sessionA, "reset", agent)

	pending := f.tr.waitApproval(t, event.ApprovalPending)
	assert.Equal(t, "reset", pending.Verb)
	assert.True(t, uuid.Valid(pending.ApprovalID), "approval ids are UUID v4")
	assert.Empty(t, f.kh.Calls(), "nothing runs before the operator answers")
	require.NoError(t, f.svc.Resolve(sessionA, pending.ApprovalID, true))

	r := wait(t, done)
	require.NoError(t, r.err)
	assert.Equal(t, "ran reset\n", r.res.Output)
	assert.Equal(t, []fakeCall{{verb: "reset", actor: "agent:" + sessionA}}, f.kh.Calls())
	assert.Equal(t, []string{"approval:pending", "approval:approved", "verb:reset:agent"}, summary(t, f.tr.Events(sessionA)))
	verb := decode[event.VerbData](t, f.tr.Events(sessionA)[2])
	require.NotNil(t, verb.ExitCode)
	assert.Equal(t, 0, *verb.ExitCode)
	assert.Equal(t, int64(7), verb.DurationMS)
	assert.ErrorIs(t, f.svc.Resolve(sessionA, pending.ApprovalID, true), ErrResolved)
}

func TestApproveDenied(t *testing.T) {
	f := newFixture(t, Config{Policy: PolicyApprove})
	done := runAsync(context.Background(), f.svc, sessionA, "cycle", agent)
	pending := f.tr.waitApproval(t, event.ApprovalPending)
	require.NoError(t, f.svc.Resolve(sessionA, pending.ApprovalID, false))

	r := wait(t, done)
	require.ErrorIs(t, r.err, ErrDenied)
	assert.Contains(t, r.err.Error(), "denied by the operator")
	assert.Empty(t, f.kh.Calls())
	assert.Equal(t, []string{"approval:pending", "approval:denied", "verb:cycle:agent:error"}, summary(t, f.tr.Events(sessionA)))
	assert.Nil(t, decode[event.VerbData](t, f.tr.Events(sessionA)[2]).ExitCode, "a verb that did not run has no exit code")
}

func TestApproveExpires(t *testing.T) {
	f := newFixture(t, Config{ApprovalTimeout: time.Millisecond})
	_, err := f.svc.Run(context.Background(), sessionA, "stop", agent)
	require.ErrorIs(t, err, ErrExpired)
	assert.Empty(t, f.kh.Calls())
	events := f.tr.Events(sessionA)
	assert.Equal(t, []string{"approval:pending", "approval:expired", "verb:stop:agent:error"}, summary(t, events))

	// A late tap is told it is too late, and runs nothing.
	id := decode[event.ApprovalData](t, events[0]).ApprovalID
	assert.ErrorIs(t, f.svc.Resolve(sessionA, id, true), ErrResolved)
	assert.Empty(t, f.kh.Calls())
	assert.Empty(t, f.svc.Pending(sessionA))
}

func TestApproveExpiresWhenTheAgentGivesUp(t *testing.T) {
	f := newFixture(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := runAsync(ctx, f.svc, sessionA, "start", agent)
	f.tr.waitApproval(t, event.ApprovalPending)
	cancel()
	r := wait(t, done)
	require.ErrorIs(t, r.err, ErrExpired)
	assert.Empty(t, f.kh.Calls())
}

func TestDenyRefusesAtOnce(t *testing.T) {
	f := newFixture(t, Config{Policy: PolicyDeny})
	for _, verb := range []string{"reset", "stop", "start", "cycle"} {
		t.Run(verb, func(t *testing.T) {
			_, err := f.svc.Run(context.Background(), sessionA, verb, agent)
			require.ErrorIs(t, err, ErrRefused)
		})
	}
	assert.Empty(t, f.kh.Calls())
	for _, s := range summary(t, f.tr.Events(sessionA)) {
		assert.True(t, strings.HasPrefix(s, "verb:") && strings.HasSuffix(s, ":agent:error"), "no approval is posted under deny: %s", s)
	}
}

func TestAllowRunsAtOnce(t *testing.T) {
	f := newFixture(t, Config{Policy: PolicyAllow})
	res, err := f.svc.Run(context.Background(), sessionA, "reset", agent)
	require.NoError(t, err)
	assert.Equal(t, "reset", res.Verb)
	assert.Equal(t, []string{"verb:reset:agent"}, summary(t, f.tr.Events(sessionA)))
}

func TestReadOnlyVerbsNeverWait(t *testing.T) {
	// With a 1 ms approval timeout, any wait would end in ErrExpired.
	for _, p := range []Policy{PolicyApprove, PolicyDeny, PolicyAllow} {
		t.Run(string(p), func(t *testing.T) {
			f := newFixture(t, Config{Policy: p, ApprovalTimeout: time.Millisecond})
			for _, verb := range []string{"status", "forensics"} {
				_, err := f.svc.Run(context.Background(), sessionA, verb, agent)
				require.NoError(t, err, verb)
			}
			assert.Len(t, f.kh.Calls(), 2)
			assert.Equal(t, []string{"verb:status:agent", "verb:forensics:agent"}, summary(t, f.tr.Events(sessionA)))
		})
	}
}

func TestOperatorNeverWaits(t *testing.T) {
	for _, p := range []Policy{PolicyApprove, PolicyDeny} {
		t.Run(string(p), func(t *testing.T) {
			f := newFixture(t, Config{Policy: p, ApprovalTimeout: time.Millisecond})
			_, err := f.svc.Run(context.Background(), sessionA, "reset", alice)
			require.NoError(t, err)
			assert.Equal(t, []fakeCall{{verb: "reset", actor: "operator:alice"}}, f.kh.Calls())
			assert.Equal(t, []string{"verb:reset:alice"}, summary(t, f.tr.Events(sessionA)))
		})
	}
}

func TestOperatorWithoutSession(t *testing.T) {
	f := newFixture(t, Config{})
	_, err := f.svc.Run(context.Background(), "", "status", alice)
	require.NoError(t, err)
	assert.Len(t, f.kh.Calls(), 1)
	assert.Zero(t, f.tr.All(), "no session, no transcript")
}

func TestBadVerbsNeverReachTheKeyholder(t *testing.T) {
	f := newFixture(t, Config{Policy: PolicyAllow})
	for _, tc := range badVerbs {
		t.Run(tc.name, func(t *testing.T) {
			for _, a := range []Actor{agent, alice} {
				_, err := f.svc.Run(context.Background(), sessionA, tc.in, a)
				require.ErrorIs(t, err, verbs.ErrUnknown)
			}
		})
	}
	assert.Empty(t, f.kh.Calls())
	assert.Zero(t, f.tr.All(), "a bad verb leaves no trace in any transcript")
	assert.Equal(t, float64(2*len(badVerbs)), testutil.ToFloat64(f.svc.metrics.Requests.WithLabelValues("invalid", "agent", "invalid"))+
		testutil.ToFloat64(f.svc.metrics.Requests.WithLabelValues("invalid", "operator", "invalid")))
}

func TestRunRefusesBadCallers(t *testing.T) {
	tests := []struct {
		name      string
		sessionID string
		actor     Actor
		want      error
	}{
		{"unknown-kind", sessionA, Actor{Kind: "root", Name: "x"}, ErrBadActor},
		{"nameless-operator", sessionA, Actor{Kind: Operator}, ErrBadActor},
		{"agent-without-session", "", agent, ErrBadSession},
		{"session-not-uuid", "../etc", alice, ErrBadSession},
		{"session-uppercase", strings.ToUpper(sessionA), alice, ErrBadSession},
		{"session-v1", "0b7e4c52-8c1a-1d0e-9f3b-2a6d5e7f8a91", alice, ErrBadSession},
	}
	f := newFixture(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.svc.Run(context.Background(), tc.sessionID, "status", tc.actor)
			assert.ErrorIs(t, err, tc.want)
		})
	}
	assert.Empty(t, f.kh.Calls())
	assert.Zero(t, f.tr.All())
}

func TestResolveErrors(t *testing.T) {
	f := newFixture(t, Config{})
	done := runAsync(context.Background(), f.svc, sessionA, "reset", agent)
	id := f.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	assert.Equal(t, []string{id}, f.svc.Pending(sessionA))

	tests := []struct {
		name       string
		sessionID  string
		approvalID string
		want       error
	}{
		{"unknown-id", sessionA, uuid.New(), ErrNotFound},
		{"other-session", sessionB, id, ErrNotFound},
		{"malformed-id", sessionA, "../" + id, ErrNotFound},
		{"malformed-session", "x", id, ErrNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, f.svc.Resolve(tc.sessionID, tc.approvalID, true), tc.want)
		})
	}
	require.NoError(t, f.svc.Resolve(sessionA, id, true))
	assert.ErrorIs(t, f.svc.Resolve(sessionA, id, false), ErrResolved)
	require.NoError(t, wait(t, done).err)
}

func TestResolvedApprovalsAreBounded(t *testing.T) {
	f := newFixture(t, Config{ApprovalTimeout: time.Millisecond})
	for i := 0; i < keptResolved+10; i++ {
		_, err := f.svc.Run(context.Background(), sessionA, "reset", agent)
		require.ErrorIs(t, err, ErrExpired)
	}
	f.svc.mu.Lock()
	defer f.svc.mu.Unlock()
	assert.Len(t, f.svc.approvals, keptResolved)
}

func TestKeyholderErrors(t *testing.T) {
	tests := []struct {
		name    string
		err     error
		outcome string
	}{
		{"busy", &ipc.StatusError{Status: 409, Message: "a mutating verb is already running"}, "busy"},
		{"timeout", &ipc.StatusError{Status: 504, Message: "timed out"}, "timeout"},
		{"ssh", &ipc.StatusError{Status: 502, Message: "host key mismatch"}, "ssh_error"},
		{"unreachable", ErrUnreachable, "unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, Config{})
			f.kh.err = tc.err
			_, err := f.svc.Run(context.Background(), sessionA, "status", alice)
			require.ErrorIs(t, err, tc.err)
			assert.Equal(t, 1.0, testutil.ToFloat64(f.svc.metrics.Requests.WithLabelValues("status", "operator", tc.outcome)))
			v := decode[event.VerbData](t, f.tr.Events(sessionA)[0])
			assert.Contains(t, v.Error, strings.Split(tc.err.Error(), " (")[0])
			assert.Nil(t, v.ExitCode)
		})
	}
}

func TestVerbTimeoutBackstop(t *testing.T) {
	f := newFixture(t, Config{VerbTimeout: time.Millisecond})
	f.kh.block = make(chan struct{}) // never closed: only the backstop ends the call
	_, err := f.svc.Run(context.Background(), sessionA, "status", alice)
	require.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestNewValidates(t *testing.T) {
	kh, tr := &fakeKeyholder{}, newFakeTranscript()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no-keyholder", Config{Transcript: tr}},
		{"no-transcript", Config{Keyholder: kh}},
		{"bad-policy", Config{Keyholder: kh, Transcript: tr, Policy: "yes"}},
		{"negative-approval-timeout", Config{Keyholder: kh, Transcript: tr, ApprovalTimeout: -time.Second}},
		{"huge-approval-timeout", Config{Keyholder: kh, Transcript: tr, ApprovalTimeout: 2 * time.Hour}},
		{"negative-verb-timeout", Config{Keyholder: kh, Transcript: tr, VerbTimeout: -time.Second}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg)
			assert.Error(t, err)
		})
	}
	t.Run("zero-is-approve", func(t *testing.T) {
		svc, err := New(Config{Keyholder: kh, Transcript: tr})
		require.NoError(t, err)
		assert.Equal(t, PolicyApprove, svc.Policy())
		assert.Equal(t, DefaultApprovalTimeout, svc.ApprovalTimeout())
	})
}

func TestParsePolicy(t *testing.T) {
	for in, want := range map[string]Policy{"": PolicyApprove, "approve": PolicyApprove, "allow": PolicyAllow, "deny": PolicyDeny} {
		got, err := ParsePolicy(in)
		require.NoError(t, err, in)
		assert.Equal(t, want, got)
	}
	for _, in := range []string{"Allow", "allow ", "yes", "1", "true"} {
		_, err := ParsePolicy(in)
		assert.ErrorIs(t, err, ErrBadPolicy, in)
	}
}

func TestMetrics(t *testing.T) {
	f := newFixture(t, Config{Policy: PolicyDeny})
	ctx := context.Background()
	_, _ = f.svc.Run(ctx, sessionA, "status", agent)
	_, _ = f.svc.Run(ctx, sessionA, "reset", agent)
	_, _ = f.svc.Run(ctx, "", "reset", alice)
	_, _ = f.svc.Run(ctx, "", "reset;id", alice)
	f.kh.exitCode = 1
	_, _ = f.svc.Run(ctx, "", "status", alice)

	const want = `
# HELP breakglass_verb_requests_total Power verb requests by verb, actor kind (operator, agent) and outcome.
# TYPE breakglass_verb_requests_total counter
breakglass_verb_requests_total{actor_kind="agent",outcome="refused",verb="reset"} 1
breakglass_verb_requests_total{actor_kind="agent",outcome="success",verb="status"} 1
breakglass_verb_requests_total{actor_kind="operator",outcome="failed",verb="status"} 1
breakglass_verb_requests_total{actor_kind="operator",outcome="invalid",verb="invalid"} 1
breakglass_verb_requests_total{actor_kind="operator",outcome="success",verb="reset"} 1
`
	require.NoError(t, testutil.GatherAndCompare(f.reg, strings.NewReader(want), "breakglass_verb_requests_total"))
	n, err := testutil.GatherAndCount(f.reg, "breakglass_verb_duration_seconds")
	require.NoError(t, err)
	assert.Equal(t, 2, n, "one duration series per verb that reached the keyholder: status and reset")
}

func TestNewMetricsReusesCollectorsAlreadyRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	first, err := NewMetrics(reg)
	require.NoError(t, err)
	second, err := NewMetrics(reg)
	require.NoError(t, err)
	assert.Same(t, first.Requests, second.Requests)
	assert.Same(t, first.Duration, second.Duration)

	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "breakglass_verb_requests_total", Help: "different"}))
	_, err = NewMetrics(other)
	assert.Error(t, err, "a clashing collector is an error, not silently ignored")
}

func TestPendingApprovalsAreBounded(t *testing.T) {
	f := newFixture(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	var waiting []<-chan runResult
	for i := 0; i < MaxPendingApprovals; i++ {
		waiting = append(waiting, runAsync(ctx, f.svc, sessionA, "reset", agent))
		f.tr.waitApproval(t, event.ApprovalPending)
	}
	_, err := f.svc.Run(context.Background(), sessionA, "stop", agent)
	require.ErrorIs(t, err, ErrTooManyPending)
	// Another session is not held back by this one.
	other := runAsync(ctx, f.svc, sessionB, "reset", agent)
	f.tr.waitApproval(t, event.ApprovalPending)
	cancel()
	for _, ch := range append(waiting, other) {
		assert.ErrorIs(t, wait(t, ch).err, ErrExpired)
	}
	assert.Empty(t, f.kh.Calls())
}
