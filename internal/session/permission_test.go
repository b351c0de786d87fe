package session

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// askingTurn asks Permit about each command in turn, as claude does, and
// reports each answer as a tool_result (allowed: "ran", denied: the
// message the agent reads).
func askingTurn(cmds ...string) func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	return func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
		emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID}))
		for _, c := range cmds {
			a := t.Permit(ctx, claude.PermissionRequest{RequestID: uuid.New(), Tool: "Bash", Display: c, Input: json.RawMessage(`{"command":"x"}`), Cwd: "/work"})
			out := "ran"
			if !a.Allow {
				out = a.Message
			}
			emit(event.New(event.ToolResult, event.ToolResultData{ToolUseID: c, Output: out, IsError: !a.Allow}))
		}
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}
}

// nextPermission waits for the next permission event on sub.
func nextPermission(t *testing.T, sub *Subscription) event.PermissionData {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-sub.C:
			require.True(t, ok, "subscription dropped")
			if e.Type == event.Permission {
				var d event.PermissionData
				require.NoError(t, json.Unmarshal(e.Data, &d))
				return d
			}
		case <-timeout:
			require.FailNow(t, "no permission event within 10s")
		}
	}
}

func permissionsOf(t *testing.T, evs []event.Event) []event.PermissionData {
	var out []event.PermissionData
	for _, e := range evs {
		if e.Type == event.Permission {
			var d event.PermissionData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			out = append(out, d)
		}
	}
	return out
}

func toolOutputs(t *testing.T, evs []event.Event) []string {
	var out []string
	for _, e := range evs {
		if e.Type == event.ToolResult {
			var d event.ToolResultData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			out = append(out, d.Output)
		}
	}
	return out
}

func TestPermissionCareful(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := newManager(t, Config{Runner: &fakeRunner{script: askingTurn("rm a", "rm b")}, Registerer: reg})
	info, err := m.Create()
	require.NoError(t, err)
	assert.Equal(t, "careful", info.Mode, "the default mode")
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, m.Prompt(info.ID, "clean up", "alice"))

	p := nextPermission(t, sub)
	assert.Equal(t, event.PermissionPending, p.State)
	assert.Equal(t, "rm a", p.Input)
	assert.Equal(t, "Bash", p.Tool)
	assert.Equal(t, "/work", p.Cwd)
	assert.True(t, uuid.Valid(p.RequestID))
	require.NoError(t, m.AnswerPermission(info.ID, p.RequestID, true, "", "alice"))
	assert.ErrorIs(t, m.AnswerPermission(info.ID, p.RequestID, false, "", "bob"), ErrPermissionAnswered)
	got := nextPermission(t, sub)
	assert.Equal(t, event.PermissionData{RequestID: p.RequestID, Tool: "Bash", State: event.PermissionAllowed, By: "alice"}, got)

	p = nextPermission(t, sub)
	require.NoError(t, m.AnswerPermission(info.ID, p.RequestID, false, "not on a Friday", "alice"))
	got = nextPermission(t, sub)
	assert.Equal(t, event.PermissionDenied, got.State)
	assert.Equal(t, "not on a Friday", got.Message)

	evs := waitDone(t, m, info.ID, 0)
	outs := toolOutputs(t, evs)
	require.Len(t, outs, 2)
	assert.Equal(t, "ran", outs[0])
	assert.Contains(t, outs[1], "denied")
	assert.Contains(t, outs[1], "not on a Friday", "the agent reads the note")
	assert.Len(t, permissionsOf(t, evs), 4, "pending and resolution, once each")
	assert.ErrorIs(t, m.AnswerPermission(info.ID, p.RequestID, true, "", "alice"), ErrPermissionAnswered, "after the turn too")

	pm := m.metrics.Permissions
	assert.Equal(t, 2.0, testutil.ToFloat64(pm.WithLabelValues("Bash", "asked")))
	assert.Equal(t, 1.0, testutil.ToFloat64(pm.WithLabelValues("Bash", "allowed")))
	assert.Equal(t, 1.0, testutil.ToFloat64(pm.WithLabelValues("Bash", "denied")))
}

func TestPermissionExpires(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: askingTurn("reboot")}, PermissionTimeout: 50 * time.Millisecond})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "fix it", "alice"))
	evs := waitDone(t, m, info.ID, 0)
	ps := permissionsOf(t, evs)
	require.Len(t, ps, 2)
	assert.Equal(t, event.PermissionPending, ps[0].State)
	assert.Equal(t, event.PermissionExpired, ps[1].State)
	assert.Equal(t, "timeout", ps[1].By)
	outs := toolOutputs(t, evs)
	require.Len(t, outs, 1)
	assert.Contains(t, outs[0], "did not answer", "the agent reads why")
	assert.ErrorIs(t, m.AnswerPermission(info.ID, ps[0].RequestID, true, "", "alice"), ErrPermissionAnswered)
	assert.Equal(t, 1.0, testutil.ToFloat64(m.metrics.Permissions.WithLabelValues("Bash", "expired")))
}

func TestPermissionModes(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: askingTurn("touch /etc/x", "pve status")}, Mode: claude.ModeReadOnly})
	info, err := m.Create()
	require.NoError(t, err)
	assert.Equal(t, "read-only", info.Mode)
	require.NoError(t, m.Prompt(info.ID, "look", "alice"))
	evs := waitDone(t, m, info.ID, 0)
	ps := permissionsOf(t, evs)
	require.Len(t, ps, 1, "read-only denies without asking; pve <verb> is not asked at all")
	assert.Equal(t, event.PermissionDenied, ps[0].State)
	assert.Equal(t, "read-only", ps[0].By)
	assert.Equal(t, []string{claude.ReadOnlyMessage, "ran"}, toolOutputs(t, evs))

	info, err = m.SetMode(info.ID, claude.ModeAutopilot)
	require.NoError(t, err)
	assert.Equal(t, "autopilot", info.Mode)
	last := info.LastEventID
	require.NoError(t, m.Prompt(info.ID, "go", "alice"))
	evs = waitDone(t, m, info.ID, last)
	assert.Empty(t, permissionsOf(t, evs), "autopilot never asks")
	assert.Equal(t, []string{"ran", "ran"}, toolOutputs(t, evs))

	_, err = m.SetMode(info.ID, claude.Mode("yolo"))
	assert.ErrorIs(t, err, ErrBadMode)
	_, err = m.SetMode(uuid.New(), claude.ModeCareful)
	assert.ErrorIs(t, err, ErrNotFound)

	// The mode is kept in the session's summary.
	require.NoError(t, m.Close())
	m2 := newManager(t, Config{Dir: m.dir, Runner: &fakeRunner{script: quickTurn}})
	got, err := m2.Get(info.ID)
	require.NoError(t, err)
	assert.Equal(t, "autopilot", got.Mode)

	_, err = New(Config{Dir: t.TempDir(), Runner: &fakeRunner{script: quickTurn}, Mode: "yolo"})
	assert.ErrorIs(t, err, ErrBadMode)
}

// The mode applies at the next tool request, in a running turn too.
func TestPermissionModeChangesMidTurn(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: askingTurn("rm a", "rm b")}})
	info, err := m.Create()
	require.NoError(t, err)
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, m.Prompt(info.ID, "go", "alice"))
	p := nextPermission(t, sub)
	_, err = m.SetMode(info.ID, claude.ModeAutopilot)
	require.NoError(t, err)
	require.NoError(t, m.AnswerPermission(info.ID, p.RequestID, true, "", "alice"))
	evs := waitDone(t, m, info.ID, 0)
	assert.Len(t, permissionsOf(t, evs), 2, "the second command ran unasked")
	assert.Equal(t, []string{"ran", "ran"}, toolOutputs(t, evs))
}

func TestAnswerPermissionRefusals(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: askingTurn("rm a")}})
	a, err := m.Create()
	require.NoError(t, err)
	b, err := m.Create()
	require.NoError(t, err)
	sub, err := m.Attach(a.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, m.Prompt(a.ID, "go", "alice"))
	p := nextPermission(t, sub)

	tests := []struct {
		name, session, request, note string
		want                         error
	}{
		{"unknown request", a.ID, uuid.New(), "", ErrPermissionNotFound},
		{"another session's request", b.ID, p.RequestID, "", ErrPermissionNotFound},
		{"not a UUID", a.ID, "../" + p.RequestID, "", ErrPermissionNotFound},
		{"upper case", a.ID, strings.ToUpper(p.RequestID), "", ErrPermissionNotFound},
		{"unknown session", uuid.New(), p.RequestID, "", ErrNotFound},
		{"huge note", a.ID, p.RequestID, strings.Repeat("x", MaxPermissionMessage+1), ErrMessageTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, m.AnswerPermission(tc.session, tc.request, true, tc.note, "mallory"), tc.want)
		})
	}
	require.NoError(t, m.AnswerPermission(a.ID, p.RequestID, false, "", "alice"), "still pending after every refusal")
	evs := waitDone(t, m, a.ID, 0)
	assert.Equal(t, "alice", permissionsOf(t, evs)[1].By)
}

// A prompt sent while a turn runs goes into it: a `user` event with steer
// set, once, and the runner's Input carries it.
func TestSteer(t *testing.T) {
	gate, hold := make(chan struct{}), make(chan struct{})
	steered := make(chan []string, 1)
	m := newManager(t, Config{Runner: &fakeRunner{script: func(ctx context.Context, tr claude.Turn, emit func(event.Event)) claude.Outcome {
		<-gate
		steered <- tr.Input.Close() // what the runner writes on claude's stdin
		<-hold
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "first", "alice"))
	isSteer, err := m.PromptOrSteer(info.ID, "also check dmesg", "bob")
	require.NoError(t, err)
	assert.True(t, isSteer)
	close(gate)
	assert.Equal(t, []string{"also check dmesg"}, <-steered)
	_, err = m.PromptOrSteer(info.ID, "too late", "bob")
	assert.ErrorIs(t, err, ErrTurnEnding, "a turn whose input closed takes no more")
	close(hold)
	evs := waitDone(t, m, info.ID, 0)
	var users []event.UserData
	for _, e := range evs {
		if e.Type == event.User {
			var d event.UserData
			require.NoError(t, json.Unmarshal(e.Data, &d))
			users = append(users, d)
		}
	}
	assert.Equal(t, []event.UserData{{Text: "first", Actor: "alice"}, {Text: "also check dmesg", Actor: "bob", Steer: true}}, users)
}
