package session

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
)

type observed struct {
	id       string
	typ      event.Type
	attached int
}

// chanObserver records events on a buffered channel and never blocks.
type chanObserver chan observed

func (c chanObserver) ObserveEvent(id string, e event.Event, attached int) {
	select {
	case c <- observed{id, e.Type, attached}:
	default:
	}
}

func nextDone(t *testing.T, obs chanObserver) observed {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case o := <-obs:
			if o.typ == event.Done {
				return o
			}
		case <-timeout:
			require.FailNow(t, "no done observed")
		}
	}
}

func TestObserverSeesEventsWithAttachedCount(t *testing.T) {
	obs := make(chanObserver, 256)
	m := newManager(t, Config{Runner: &fakeRunner{script: quickTurn}, Observer: obs})
	info, err := m.Create()
	require.NoError(t, err)

	// No client attached: the done is observed with 0.
	require.NoError(t, m.Prompt(info.ID, "hi", "op"))
	assert.Equal(t, observed{info.ID, event.Done, 0}, nextDone(t, obs))

	// With a client attached: 1.
	sub, err := m.Attach(info.ID, 0)
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "again", "op"))
	assert.Equal(t, observed{info.ID, event.Done, 1}, nextDone(t, obs))
	sub.Close()

	// Events appended from outside a turn (an approval) are observed too.
	require.NoError(t, m.Append(info.ID, event.New(event.Approval, event.ApprovalData{ApprovalID: "a", Verb: "reset", State: event.ApprovalPending})))
	for o := range obs {
		if o.typ == event.Approval {
			assert.Equal(t, info.ID, o.id)
			break
		}
	}
}
