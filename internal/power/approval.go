package power

import (
	"context"
	"errors"
	"time"

	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/uuid"
	"breakglass/internal/verbs"
)

// Sentinel errors of Resolve: the api layer answers 404 and 409.
var (
	// ErrNotFound: no approval with that id in that session.
	ErrNotFound = errors.New("no such approval")
	// ErrResolved: the approval was already approved, denied or expired.
	ErrResolved = errors.New("approval already resolved")
	// ErrTooManyPending: the session already has MaxPendingApprovals
	// approvals waiting; the agent cannot flood the operator with more.
	ErrTooManyPending = errors.New("too many approvals already waiting for the operator")
)

// MaxPendingApprovals bounds the approvals one session may have waiting.
const MaxPendingApprovals = 4

// approval is one agent mutating verb waiting for the operator.
type approval struct {
	id        string
	sessionID string
	verb      verbs.Name
	args      []string
	// decided is closed by Resolve once state is approved or denied.
	decided chan struct{}
	// state is guarded by Service.mu: pending until Resolve or expiry.
	state event.ApprovalState
	// presence is the operator's assertion given with his approval,
	// relayed to the keyholder with the verb (guarded by Service.mu).
	presence *ipc.Presence
	// by is who approved or denied (guarded by Service.mu).
	by string
}

// await posts a pending approval for verb in the session and blocks until the
// operator answers, the approval times out, or ctx ends (the agent gave up or
// its turn ended). It returns the operator's presence (nil error) when
// approved, ErrDenied or ErrExpired. Every change of state is an `approval`
// event.
func (s *Service) await(ctx context.Context, sessionID string, verb verbs.Name, args []string) (*ipc.Presence, error) {
	a := &approval{
		id:        uuid.New(),
		sessionID: sessionID,
		verb:      verb,
		args:      args,
		decided:   make(chan struct{}),
		state:     event.ApprovalPending,
	}
	// WARNING: the approval is registered before its pending event goes
	// out, so an operator who taps at once finds it
	// (TestApproveRunsTheVerb resolves as soon as it sees the event).
	s.mu.Lock()
	if s.pendingLocked(sessionID) >= MaxPendingApprovals {
		s.mu.Unlock()
		return nil, ErrTooManyPending
	}
	s.approvals[a.id] = a
	s.mu.Unlock()
	s.log.Info("approval pending", "approval_id", a.id, "verb", verb, "session_id", sessionID)
	s.emit(sessionID, event.New(event.Approval, event.ApprovalData{ApprovalID: a.id, Verb: string(verb), Args: args, State: event.ApprovalPending}))

	timer := time.NewTimer(s.approvalTimeout)
	defer timer.Stop()
	select {
	case <-a.decided:
	case <-timer.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	if a.state == event.ApprovalPending {
		// Resolve did not get there first: the approval expires.
		a.state = event.ApprovalExpired
	}
	state, presence, by := a.state, a.presence, a.by
	s.retireLocked(a.id)
	s.mu.Unlock()

	s.log.Info("approval "+string(state), "approval_id", a.id, "verb", verb, "session_id", sessionID, "by", by)
	s.emit(sessionID, event.New(event.Approval, event.ApprovalData{ApprovalID: a.id, Verb: string(verb), Args: args, State: state, By: by}))
	switch state {
	case event.ApprovalApproved:
		return presence, nil
	case event.ApprovalDenied:
		return nil, ErrDenied
	}
	return nil, ErrExpired
}

// retireLocked remembers that approval id is resolved, forgetting the oldest
// resolved ones beyond keptResolved.
func (s *Service) retireLocked(id string) {
	s.resolved = append(s.resolved, id)
	for len(s.resolved) > keptResolved {
		delete(s.approvals, s.resolved[0])
		s.resolved = s.resolved[1:]
	}
}

// Resolve answers approval approvalID of session sessionID. It returns
// ErrNotFound when the session has no such approval (malformed ids included),
// and ErrResolved when it was already approved, denied or expired.
func (s *Service) Resolve(sessionID, approvalID string, approve bool) error {
	return s.Answer(sessionID, approvalID, approve, nil, "")
}

// Answer is Resolve with the operator's presence, relayed to the keyholder
// with the approved verb (a deny needs none and keeps none), and by, the
// operator who answered, named in the resolved `approval` event.
func (s *Service) Answer(sessionID, approvalID string, approve bool, presence *ipc.Presence, by string) error {
	if !uuid.Valid(sessionID) || !uuid.Valid(approvalID) {
		return ErrNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.approvals[approvalID]
	if !ok || a.sessionID != sessionID {
		return ErrNotFound
	}
	if a.state != event.ApprovalPending {
		return ErrResolved
	}
	a.state, a.by = event.ApprovalDenied, by
	if approve {
		a.state, a.presence = event.ApprovalApproved, presence
	}
	close(a.decided)
	return nil
}

// pendingLocked counts the session's approvals still waiting.
func (s *Service) pendingLocked(sessionID string) int {
	n := 0
	for _, a := range s.approvals {
		if a.sessionID == sessionID && a.state == event.ApprovalPending {
			n++
		}
	}
	return n
}

// Pending returns the ids of the session's approvals still waiting, in no
// particular order.
func (s *Service) Pending(sessionID string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for id, a := range s.approvals {
		if a.sessionID == sessionID && a.state == event.ApprovalPending {
			out = append(out, id)
		}
	}
	return out
}
