package notify_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/notify"
	"breakglass/internal/session"
	"breakglass/internal/testing/pushdouble"
	"breakglass/internal/vmwatch"
)

// approvalTurn is a turn that posts an approval and ends: each turn makes
// two pushes (the approval, and the turn that ended unwatched).
type approvalTurn struct{}

func (approvalTurn) Run(_ context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	emit(event.New(event.Approval, event.ApprovalData{ApprovalID: "a", Verb: "reset", State: event.ApprovalPending}))
	return claude.Outcome{Outcome: event.OutcomeSuccess}
}

// TestHangingPushServiceNeverBlocksATurn: the session manager calls the
// notifier with a session's lock held; with the only worker stuck on a
// push service that never answers and a queue of one, turn after turn
// still runs to its end.
func TestHangingPushServiceNeverBlocksATurn(t *testing.T) {
	r := newRig(t, func(c *notify.Config) { c.Workers, c.QueueSize, c.Timeout = 1, 1, time.Hour })
	r.push.Script(r.sub, pushdouble.Answer{Hang: true})
	m, err := session.New(session.Config{Dir: t.TempDir(), Runner: approvalTurn{}, Observer: r.n})
	require.NoError(t, err)
	defer m.Close()
	info, err := m.Create()
	require.NoError(t, err)
	for i := range 5 {
		require.NoError(t, m.Prompt(info.ID, "go", "op"))
		waitIdle(t, m, info.ID, i+1)
	}
}

// waitIdle reads the session's log until it holds n done events.
func waitIdle(t *testing.T, m *session.Manager, id string, n int) {
	t.Helper()
	sub, err := m.Attach(id, 0)
	require.NoError(t, err)
	defer sub.Close()
	seen := 0
	for e := range sub.Replay() {
		if e.Type == event.Done {
			seen++
		}
	}
	timeout := time.After(wait)
	for seen < n {
		select {
		case e, ok := <-sub.C:
			require.True(t, ok)
			if e.Type == event.Done {
				seen++
			}
		case <-timeout:
			t.Fatalf("turn %d did not end", n)
		}
	}
}

// flipping is a keyholder whose VM changes state every two readings.
type flipping struct{ n int }

func (f *flipping) Run(context.Context, string, string) (ipc.Result, error) {
	f.n++
	if (f.n/2)%2 == 0 {
		return ipc.Result{Output: "status: running\n"}, nil
	}
	return ipc.Result{Output: "status: stopped\n"}, nil
}

// TestHangingPushServiceNeverBlocksTheWatch: the VM watch reports change
// after change to a notifier whose only worker hangs and whose queue is
// full; every reading still returns.
func TestHangingPushServiceNeverBlocksTheWatch(t *testing.T) {
	r := newRig(t, func(c *notify.Config) { c.Workers, c.QueueSize, c.Timeout = 1, 1, time.Hour })
	r.push.Script(r.sub, pushdouble.Answer{Hang: true})
	changes := 0
	w, err := vmwatch.New(vmwatch.Config{
		Keyholder: &flipping{},
		OnChange: func(_, to vmwatch.State) {
			changes++
			r.n.VMChanged(notify.VMState(to))
		},
	})
	require.NoError(t, err)
	for range 40 {
		w.Check(context.Background())
	}
	require.GreaterOrEqual(t, changes, 9)
}
