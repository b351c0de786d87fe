package session

import "breakglass/internal/event"

// Subscription is one client attached to a session.
type Subscription struct {
	// Replay holds the events after the cursor that were in the log when
	// the client attached, in order. It is shared and must not be changed.
	Replay []event.Event
	// C carries every later event, in order. It is closed when the client
	// fell too far behind (it resumes by id from the last event it got), or
	// when the manager closes.
	C <-chan event.Event

	ch    chan event.Event
	after int64
	s     *sess
	m     *Manager
}

// Attach subscribes to session id from after the event with id after (0 for
// the whole log). Every event comes exactly once: first in Replay, then on C.
func (m *Manager) Attach(id string, after int64) (*Subscription, error) {
	if after < 0 {
		return nil, ErrBadCursor
	}
	s, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	sub := &Subscription{ch: make(chan event.Event, m.bufSize), s: s, m: m}
	sub.C = sub.ch
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.file == nil {
		return nil, ErrClosed
	}
	// WARNING: the replay snapshot and the subscription must be taken
	// under the same lock appendLocked holds. Subscribing after the
	// snapshot loses the events appended in between; subscribing before
	// it without the lock sends them twice. Guarded by
	// TestAttachReconnectNoGapNoDuplicate and TestAttachDuringTurn.
	// A cursor past the end (the log was cut, or the client is confused)
	// gets nothing it claims to have: live events up to it are skipped.
	n := int64(len(s.events))
	sub.after = after
	sub.Replay = s.events[min(after, n):n:n]
	s.subs[sub] = struct{}{}
	m.metrics.Subscribers.Inc()
	return sub, nil
}

// Close detaches the subscription. It is safe to call more than once, and
// after the manager dropped it.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	defer sub.s.mu.Unlock()
	sub.m.dropLocked(sub.s, sub)
}
