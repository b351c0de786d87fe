package session

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
)

// fakeRunner runs turns with a script the test sets.
type fakeRunner struct {
	script func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome

	mu    sync.Mutex
	turns []claude.Turn
}

func (f *fakeRunner) Run(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	f.mu.Lock()
	f.turns = append(f.turns, t)
	f.mu.Unlock()
	return f.script(ctx, t, emit)
}

func (f *fakeRunner) seen() []claude.Turn {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]claude.Turn(nil), f.turns...)
}

// quickTurn is a short successful turn: session, text, result.
func quickTurn(_ context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID, Model: "sonnet"}))
	emit(event.New(event.Text, event.TextData{Delta: "hello"}))
	emit(event.New(event.Result, event.ResultData{Subtype: "success", Text: "hello", TotalCostUSD: 0.25}))
	return claude.Outcome{Outcome: event.OutcomeSuccess}
}

// untilCancelled blocks until the turn's context ends and reports it the
// way claude.Runner does.
func untilCancelled(started chan<- struct{}) func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	return func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
		emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID}))
		if started != nil {
			started <- struct{}{}
		}
		<-ctx.Done()
		if errors.Is(context.Cause(ctx), claude.ErrCancelled) {
			return claude.Outcome{Outcome: event.OutcomeCancelled, ExitCode: 0}
		}
		return claude.Outcome{Outcome: event.OutcomeTimeout, ExitCode: -1}
	}
}

// clock is a fake clock that moves one second per reading.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Second)
	return c.t
}

func newManager(t *testing.T, cfg Config) *Manager {
	t.Helper()
	if cfg.Dir == "" {
		cfg.Dir = t.TempDir()
	}
	m, err := New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// waitDone reads session id's events until the turn's done and returns every
// event from the start of the log.
func waitDone(t *testing.T, m *Manager, id string, after int64) []event.Event {
	t.Helper()
	sub, err := m.Attach(id, after)
	require.NoError(t, err)
	defer sub.Close()
	var got []event.Event
	for e := range sub.Replay() {
		got = append(got, e)
		if e.Type == event.Done {
			return got
		}
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case e, ok := <-sub.C:
			require.True(t, ok, "subscription dropped")
			got = append(got, e)
			if e.Type == event.Done {
				return got
			}
		case <-timeout:
			require.FailNow(t, "no done event within 10s", "got %v", types(got))
		}
	}
}

func types(es []event.Event) []event.Type {
	out := make([]event.Type, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

func doneOf(t *testing.T, e event.Event) event.DoneData {
	t.Helper()
	require.Equal(t, event.Done, e.Type)
	var d event.DoneData
	require.NoError(t, json.Unmarshal(e.Data, &d))
	return d
}

// replayed collects a subscription's replay.
func replayed(t *testing.T, sub *Subscription) []event.Event {
	t.Helper()
	var got []event.Event
	for e := range sub.Replay() {
		got = append(got, e)
	}
	require.NoError(t, sub.ReplayErr())
	return got
}
