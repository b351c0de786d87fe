package session

import (
	"iter"

	"breakglass/internal/event"
)

// Snapshot is a session's log as it was at one moment, read from disk as
// it is walked: holding one costs no memory per event.
type Snapshot struct {
	// Info describes the session at that moment.
	Info Info

	dir     string
	end     int64         // the log's length of whole lines then
	after   int64         // events up to this id are skipped
	n       int64         // the id of the last event then
	pending []event.Event // events after end held in memory (unsaved)
	err     error
}

// snapshotLocked takes s's log as it is now, from after the event after.
// s.mu must be held.
func snapshotLocked(s *sess, after int64) *Snapshot {
	snap := &Snapshot{Info: s.info(), dir: s.dir, end: s.saved, after: after, n: s.last}
	for _, e := range s.pending {
		if e.ID > after {
			snap.pending = append(snap.pending, e)
		}
	}
	return snap
}

// Events yields the snapshot's events in order, read from the file. It
// stops early when the file cannot be read; Err then says why.
func (snap *Snapshot) Events() iter.Seq[event.Event] {
	return func(yield func(event.Event) bool) {
		stopped := false
		snap.err = replayFile(snap.dir, snap.end, snap.after, func(e event.Event) bool {
			if !yield(e) {
				stopped = true
				return false
			}
			return true
		})
		if snap.err != nil || stopped {
			return
		}
		for _, e := range snap.pending {
			if !yield(e) {
				return
			}
		}
	}
}

// Err is why Events stopped early, or nil.
func (snap *Snapshot) Err() error { return snap.err }

// Len is how many events Events yields.
func (snap *Snapshot) Len() int64 { return snap.n - min(snap.after, snap.n) }

// Subscription is one client attached to a session.
type Subscription struct {
	// C carries every event after the ones Replay yields, in order. It is
	// closed when the client fell too far behind (it resumes by id from
	// the last event it got), or when the manager closes.
	C <-chan event.Event

	replay *Snapshot
	ch     chan event.Event
	after  int64
	s      *sess
	m      *Manager
}

// Attach subscribes to session id from after the event with id after (0 for
// the whole log). Every event comes exactly once: first from Replay (read
// from the file), then on C.
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
	if s.closed {
		return nil, ErrClosed
	}
	if err := m.freshLocked(s); err != nil {
		return nil, err
	}
	// WARNING: the replay snapshot (the log's length of whole lines) and
	// the subscription must be taken under the same lock appendLocked
	// holds. Subscribing after the snapshot loses the events appended in
	// between; subscribing before it without the lock sends them twice.
	// Guarded by TestAttachReconnectNoGapNoDuplicate,
	// TestReplaySeamUnderStreamingTurn and TestAttachDuringTurn.
	// A cursor past the end (the log was cut, or the client is confused)
	// gets nothing it claims to have: live events up to it are skipped.
	sub.replay = snapshotLocked(s, after)
	sub.after = max(after, s.last)
	s.subs[sub] = struct{}{}
	s.touched = m.now()
	m.metrics.Subscribers.Inc()
	return sub, nil
}

// Replay yields the events after the cursor that were in the log when the
// client attached, in order, read from the file. ReplayErr says why it
// stopped early, if it did.
func (sub *Subscription) Replay() iter.Seq[event.Event] { return sub.replay.Events() }

// ReplayErr is why Replay stopped early (the log could not be read), or nil.
func (sub *Subscription) ReplayErr() error { return sub.replay.Err() }

// Backlog is how many events Replay yields.
func (sub *Subscription) Backlog() int64 { return sub.replay.Len() }

// Close detaches the subscription. It is safe to call more than once, and
// after the manager dropped it.
func (sub *Subscription) Close() {
	sub.s.mu.Lock()
	defer sub.s.mu.Unlock()
	sub.m.dropLocked(sub.s, sub)
}

// Snapshot takes session id's whole log as it is now, for export; unlike
// Attach it follows nothing.
func (m *Manager) Snapshot(id string) (*Snapshot, error) {
	s, err := m.lookup(id)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	if err := m.freshLocked(s); err != nil {
		return nil, err
	}
	return snapshotLocked(s, 0), nil
}
