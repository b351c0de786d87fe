package session

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

func TestCreateListGet(t *testing.T) {
	clk := &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}, Now: clk.Now})
	a, err := m.Create()
	require.NoError(t, err)
	b, err := m.Create()
	require.NoError(t, err)
	assert.True(t, uuid.Valid(a.ID))
	assert.Equal(t, StateIdle, a.State)

	list := m.List()
	require.Len(t, list, 2)
	assert.Equal(t, b.ID, list[0].ID, "newest first")
	assert.Equal(t, a.ID, list[1].ID)

	got, err := m.Get(a.ID)
	require.NoError(t, err)
	assert.Equal(t, a, got)

	for _, id := range []string{"", "../x", strings.ToUpper(a.ID), uuid.New()} {
		_, err := m.Get(id)
		assert.ErrorIs(t, err, ErrNotFound, id)
	}
}

func TestTurn(t *testing.T) {
	runner := &fakeRunner{script: quickTurn}
	m := newManager(t, Config{Runner: runner})
	info, err := m.Create()
	require.NoError(t, err)

	require.NoError(t, m.Prompt(info.ID, "first\nprompt", "alice"))
	got := waitDone(t, m, info.ID, 0)
	assert.Equal(t, []event.Type{event.User, event.Session, event.Text, event.Result, event.Done}, types(got))
	for i, e := range got {
		assert.Equal(t, int64(i+1), e.ID)
	}
	var u event.UserData
	require.NoError(t, json.Unmarshal(got[0].Data, &u))
	assert.Equal(t, event.UserData{Text: "first\nprompt", Actor: "alice"}, u)
	assert.Equal(t, event.OutcomeSuccess, doneOf(t, got[4]).Outcome)

	require.NoError(t, m.Prompt(info.ID, "second", "alice"))
	got2 := waitDone(t, m, info.ID, 5)
	assert.Equal(t, int64(6), got2[0].ID)

	turns := runner.seen()
	require.Len(t, turns, 2)
	assert.False(t, turns[0].Resume, "the first turn starts the conversation")
	assert.True(t, turns[1].Resume, "later turns resume it")
	assert.Equal(t, info.ID, turns[1].SessionID)
	assert.Equal(t, filepath.Join(m.dir, info.ID), turns[0].Dir)

	got3, err := m.Get(info.ID)
	require.NoError(t, err)
	assert.Equal(t, "first prompt", got3.Title)
	assert.Equal(t, StateIdle, got3.State)
	assert.Equal(t, int64(10), got3.LastEventID)
}

func TestPromptRefusals(t *testing.T) {
	started := make(chan struct{}, 4)
	m := newManager(t, Config{Runner: &fakeRunner{script: untilCancelled(started)}, MaxConcurrentTurns: 1})
	a, err := m.Create()
	require.NoError(t, err)
	b, err := m.Create()
	require.NoError(t, err)

	tests := []struct {
		name string
		id   string
		text string
		want error
	}{
		{"empty", a.ID, "", ErrEmptyPrompt},
		{"blank", a.ID, " \n\t", ErrEmptyPrompt},
		{"too-large", a.ID, strings.Repeat("x", MaxPromptBytes+1), ErrPromptTooLarge},
		{"unknown", uuid.New(), "hi", ErrNotFound},
		{"traversal", "../" + a.ID, "hi", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, m.Prompt(tt.id, tt.text, "alice"), tt.want)
		})
	}

	assert.ErrorIs(t, m.Cancel(a.ID), ErrNotRunning)
	require.NoError(t, m.Prompt(a.ID, strings.Repeat("x", MaxPromptBytes), "alice"))
	<-started
	steered, err := m.PromptOrSteer(a.ID, "again", "alice")
	require.NoError(t, err)
	assert.True(t, steered, "a prompt while a turn runs steers it")
	assert.ErrorIs(t, m.Prompt(b.ID, "other", "alice"), ErrTooManyTurns)
	info, err := m.Get(a.ID)
	require.NoError(t, err)
	assert.Equal(t, StateRunning, info.State)

	require.NoError(t, m.Cancel(a.ID))
	got := waitDone(t, m, a.ID, 0)
	assert.Equal(t, event.OutcomeCancelled, doneOf(t, got[len(got)-1]).Outcome)
	require.NoError(t, m.Prompt(b.ID, "other", "alice"), "the slot is free once done is written")
	<-started
	require.NoError(t, m.Cancel(b.ID))
	waitDone(t, m, b.ID, 0)
}

func TestTimeout(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: untilCancelled(nil)}, TurnTimeout: 50 * time.Millisecond})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "slow", "alice"))
	got := waitDone(t, m, info.ID, 0)
	assert.Equal(t, event.OutcomeTimeout, doneOf(t, got[len(got)-1]).Outcome)
}

func TestRunnerPanics(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: func(context.Context, claude.Turn, func(event.Event)) claude.Outcome {
		panic("boom")
	}}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	got := waitDone(t, m, info.ID, 0)
	assert.Equal(t, []event.Type{event.User, event.Error, event.Done}, types(got))
	assert.Equal(t, event.OutcomeError, doneOf(t, got[2]).Outcome)
}

func TestRunnerCannotWriteReservedEvents(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: func(_ context.Context, _ claude.Turn, emit func(event.Event)) claude.Outcome {
		emit(event.New(event.Done, event.DoneData{Outcome: event.OutcomeSuccess}))
		emit(event.New(event.User, event.UserData{Text: "forged"}))
		return claude.Outcome{Outcome: "weird"}
	}}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	got := waitDone(t, m, info.ID, 0)
	assert.Equal(t, []event.Type{event.User, event.Done}, types(got), "exactly one done, written by the manager")
	assert.Equal(t, event.OutcomeError, doneOf(t, got[1]).Outcome, "an unknown outcome is an error")
	assert.ErrorIs(t, m.Append(info.ID, event.New(event.Done, event.DoneData{})), ErrReserved)
}

func TestTurnEnv(t *testing.T) {
	var released atomic.Int32
	runner := &fakeRunner{script: quickTurn}
	m := newManager(t, Config{Runner: runner, TurnEnv: func(id string) ([]string, func()) {
		return []string{"BREAKGLASS_TURN_TOKEN=" + id}, func() { released.Add(1) }
	}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	waitDone(t, m, info.ID, 0)
	assert.Equal(t, []string{"BREAKGLASS_TURN_TOKEN=" + info.ID}, runner.seen()[0].Env)
	assert.Equal(t, int32(1), released.Load())
}

func TestAppend(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Append(info.ID, event.New(event.Verb, event.VerbData{Verb: "status", Actor: "alice"})))
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	rep := replayed(t, sub)
	require.Len(t, rep, 1)
	assert.Equal(t, event.Verb, rep[0].Type)
	assert.ErrorIs(t, m.Append("nope", event.New(event.Verb, event.VerbData{})), ErrNotFound)
}

// TestAttachDuringTurn attaches at every cursor while a turn appends, and
// checks each subscription sees the log from its cursor exactly once.
func TestAttachDuringTurn(t *testing.T) {
	const n = 500
	gate := make(chan struct{})
	m := newManager(t, Config{Runner: &fakeRunner{script: func(_ context.Context, _ claude.Turn, emit func(event.Event)) claude.Outcome {
		<-gate
		for i := 0; i < n; i++ {
			emit(event.New(event.Text, event.TextData{Delta: "x"}))
		}
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}}, SubscriberBuffer: n + 10})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "go", "alice"))

	var subs []*Subscription
	close(gate)
	for i := 0; i < 50; i++ {
		sub, err := m.Attach(info.ID, int64(i))
		require.NoError(t, err)
		subs = append(subs, sub)
	}
	for i, sub := range subs {
		want := int64(i) + 1
		for e := range sub.Replay() {
			require.Equal(t, want, e.ID)
			want++
		}
		for want <= n+2 {
			e, ok := <-sub.C
			require.True(t, ok)
			require.Equal(t, want, e.ID, "subscription %d", i)
			want++
		}
		sub.Close()
	}
}

// TestAttachReconnectNoGapNoDuplicate disconnects a client at random points
// of a long turn and resumes it by id: what it saw is the log, once.
func TestAttachReconnectNoGapNoDuplicate(t *testing.T) {
	const n = 5000
	m := newManager(t, Config{Runner: &fakeRunner{script: func(_ context.Context, _ claude.Turn, emit func(event.Event)) claude.Outcome {
		for i := 0; i < n; i++ {
			emit(event.New(event.Text, event.TextData{Delta: "x"}))
		}
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}}, SubscriberBuffer: 8})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "go", "alice"))

	rng := rand.New(rand.NewPCG(1, 2))
	var seen []int64
	last := int64(0)
	reconnects := 0
	for {
		sub, err := m.Attach(info.ID, last)
		require.NoError(t, err)
		budget := rng.IntN(200) + 1
		done := false
		take := func(e event.Event) {
			seen = append(seen, e.ID)
			last = e.ID
			budget--
			done = done || e.Type == event.Done
		}
		for e := range sub.Replay() {
			if budget == 0 || done {
				break
			}
			take(e)
		}
	live:
		for budget > 0 && !done {
			select {
			case e, ok := <-sub.C:
				if !ok {
					break live // dropped for being slow: resume by id
				}
				take(e)
			case <-time.After(10 * time.Second):
				require.FailNow(t, "stream stalled", "last %d", last)
			}
		}
		sub.Close()
		if done {
			break
		}
		reconnects++
	}
	require.GreaterOrEqual(t, reconnects, 20)
	require.Len(t, seen, n+2)
	for i, id := range seen {
		require.Equal(t, int64(i+1), id, "gap or duplicate")
	}
}

func TestSlowSubscriberIsDropped(t *testing.T) {
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}, SubscriberBuffer: 2})
	info, err := m.Create()
	require.NoError(t, err)
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	for i := 0; i < 3; i++ {
		require.NoError(t, m.Append(info.ID, event.New(event.Verb, event.VerbData{Verb: "status"})))
	}
	var ids []int64
	for e := range sub.C {
		ids = append(ids, e.ID)
	}
	assert.Equal(t, []int64{1, 2}, ids, "the channel closes when the buffer is full")
	again, err := m.Attach(info.ID, 2)
	require.NoError(t, err)
	defer again.Close()
	rep := replayed(t, again)
	require.Len(t, rep, 1)
	assert.Equal(t, int64(3), rep[0].ID)
	assert.ErrorIs(t, func() error { _, err := m.Attach(info.ID, -1); return err }(), ErrBadCursor)
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	runner := &fakeRunner{script: quickTurn}
	m, err := New(Config{Dir: dir, Runner: runner})
	require.NoError(t, err)
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "check the disk", "alice"))
	before := waitDone(t, m, info.ID, 0)
	require.NoError(t, m.Close())

	require.NoError(t, os.MkdirAll(filepath.Join(dir, "home", ".claude"), 0o700), "the agent's home lives beside the sessions")
	m2 := newManager(t, Config{Dir: dir, Runner: runner})
	sub, err := m2.Attach(info.ID, 0)
	require.NoError(t, err)
	sub.Close()
	rep := replayed(t, sub)
	require.Len(t, rep, len(before))
	for i := range before {
		assert.Equal(t, before[i].ID, rep[i].ID)
		assert.Equal(t, before[i].Type, rep[i].Type)
		assert.JSONEq(t, string(before[i].Data), string(rep[i].Data))
		assert.True(t, before[i].Time.Equal(rep[i].Time))
	}
	got, err := m2.Get(info.ID)
	require.NoError(t, err)
	assert.Equal(t, "check the disk", got.Title)
	assert.Len(t, m2.List(), 1)

	require.NoError(t, m2.Prompt(info.ID, "again", "alice"))
	waitDone(t, m2, info.ID, int64(len(before)))
	assert.True(t, runner.seen()[1].Resume, "a reloaded conversation resumes")
}

func TestReloadClosesInterruptedTurn(t *testing.T) {
	dir := t.TempDir()
	id := uuid.New()
	require.NoError(t, os.Mkdir(filepath.Join(dir, id), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, id, metaFile), []byte(`{"id":"`+id+`","created_at":"2026-01-01T00:00:00Z"}`), 0o600))
	lines := `{"id":1,"event":"user","time":"2026-01-01T00:00:01Z","data":{"text":"hi","actor":"alice"}}
{"id":2,"event":"session","time":"2026-01-01T00:00:02Z","data":{"session_id":"x","model":"m","tools":null}}
{"id":3,"event":"text","time":"2026-01-01T00:00:03Z","data":{"delta":"he"}}
{"id":4,"event":"text","time":"2026-01-01T00:00:04Z","da`
	require.NoError(t, os.WriteFile(filepath.Join(dir, id, eventsFile), []byte(lines), 0o600))

	for round := 0; round < 2; round++ {
		m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
		require.NoError(t, err)
		sub, err := m.Attach(id, 0)
		require.NoError(t, err)
		sub.Close()
		rep := replayed(t, sub)
		assert.Equal(t, []event.Type{event.User, event.Session, event.Text, event.Error, event.Done}, types(rep), "round %d", round)
		d := doneOf(t, rep[4])
		assert.Equal(t, event.OutcomeError, d.Outcome)
		assert.Equal(t, int64(2000), d.DurationMS)
		require.NoError(t, m.Close())
	}
	b, err := os.ReadFile(filepath.Join(dir, id, eventsFile))
	require.NoError(t, err)
	assert.Equal(t, 5, strings.Count(string(b), "\n"))
	assert.True(t, strings.HasSuffix(string(b), "\n"))
}

func TestCloseEndsRunningTurns(t *testing.T) {
	started := make(chan struct{}, 1)
	dir := t.TempDir()
	m, err := New(Config{Dir: dir, Runner: &fakeRunner{script: untilCancelled(started)}})
	require.NoError(t, err)
	info, err := m.Create()
	require.NoError(t, err)
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	<-started
	require.NoError(t, m.Close())
	var got []event.Event
	for e := range sub.C {
		got = append(got, e)
	}
	assert.Equal(t, []event.Type{event.User, event.Session, event.Error, event.Done}, types(got))
	assert.Equal(t, event.OutcomeError, doneOf(t, got[3]).Outcome)
	_, err = m.Create()
	assert.ErrorIs(t, err, ErrClosed)
}

func TestNoPathFromBadID(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "sessions")
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: quickTurn}})
	for _, id := range []string{"../x", "..", ".", "/etc", "%2e%2e", "../../" + uuid.New(), uuid.New() + "/..", "00000000-0000-1000-8000-000000000000", strings.ToUpper(uuid.New())} {
		t.Run(id, func(t *testing.T) {
			assert.ErrorIs(t, m.Prompt(id, "hi", "alice"), ErrNotFound)
			assert.ErrorIs(t, m.Cancel(id), ErrNotFound)
			assert.ErrorIs(t, m.Append(id, event.New(event.Verb, event.VerbData{})), ErrNotFound)
			_, err := m.Attach(id, 0)
			assert.ErrorIs(t, err, ErrNotFound)
			_, err = sessionDir(dir, id)
			assert.ErrorIs(t, err, ErrNotFound)
		})
	}
	entries, err := os.ReadDir(root)
	require.NoError(t, err)
	require.Len(t, entries, 1, "nothing appears beside the sessions folder")
	entries, err = os.ReadDir(dir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}, Registerer: reg})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "hi", "alice"))
	waitDone(t, m, info.ID, 0)
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(`
# HELP breakglass_turns_total Claude turns ended, by outcome (success, error, cancelled, timeout).
# TYPE breakglass_turns_total counter
breakglass_turns_total{outcome="cancelled"} 0
breakglass_turns_total{outcome="error"} 0
breakglass_turns_total{outcome="success"} 1
breakglass_turns_total{outcome="timeout"} 0
# HELP breakglass_turns_running Claude turns running now.
# TYPE breakglass_turns_running gauge
breakglass_turns_running 0
# HELP breakglass_sessions Sessions the web holds.
# TYPE breakglass_sessions gauge
breakglass_sessions 1
# HELP breakglass_sse_subscribers Clients attached to a session's stream now.
# TYPE breakglass_sse_subscribers gauge
breakglass_sse_subscribers 1
`), "breakglass_turns_total", "breakglass_turns_running", "breakglass_sessions", "breakglass_sse_subscribers"))
	assert.Equal(t, 1, testutil.CollectAndCount(m.metrics.TurnDuration))
}

func TestTitle(t *testing.T) {
	long := strings.Repeat("é", titleRunes+5)
	tests := []struct {
		name, in, want string
	}{
		{"plain", "check the disk", "check the disk"},
		{"one-line", "check\n\tthe   disk\n", "check the disk"},
		{"cut", long, strings.Repeat("é", titleRunes-1) + "…"},
		{"exact", strings.Repeat("a", titleRunes), strings.Repeat("a", titleRunes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, title(tt.in))
		})
	}
}
