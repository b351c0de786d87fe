package session

import (
	"context"
	"errors"
	"fmt"
	"time"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// The operator in the loop (docs/operator-loop.md): each session's agent
// mode decides claude's permission requests, careful mode asks the
// operator with a `permission` event and waits (bounded) for an answer,
// and a prompt sent while a turn runs steers it.

// DefaultPermissionTimeout bounds the wait for the operator's answer
// ($BREAKGLASS_PERMISSION_TIMEOUT_SECONDS).
const DefaultPermissionTimeout = 600 * time.Second

// MaxPermissionMessage bounds the operator's note to the agent.
const MaxPermissionMessage = 4 << 10

// maxPermissionsKept bounds the answered requests a session remembers (so
// a second answer is a conflict, not unknown).
const maxPermissionsKept = 256

// Errors of the operator's answers and modes, checked with errors.Is.
var (
	ErrPermissionNotFound = errors.New("no such permission request in this session")
	ErrPermissionAnswered = errors.New("this permission request is already answered")
	ErrMessageTooLarge    = fmt.Errorf("note over %d bytes", MaxPermissionMessage)
	ErrBadMode            = errors.New("unknown agent mode: autopilot, careful or read-only")
	ErrTurnEnding         = errors.New("the running turn is ending and takes no more messages: send it again in a moment")
)

// permission is one request claude asked the operator about.
type permission struct {
	id    string
	tool  string
	state string
	// answer receives the operator's answer once (buffered).
	answer chan claude.PermissionAnswer
}

// SetMode changes session id's agent mode; it applies from the next tool
// request on, in a running turn too.
func (m *Manager) SetMode(id string, mode claude.Mode) (Info, error) {
	if !mode.Valid() {
		return Info{}, ErrBadMode
	}
	return m.change(id, func(s *sess) error {
		s.sum.Mode = string(mode)
		return nil
	})
}

// modeLocked is s's mode now. s.mu must be held.
func (s *sess) modeLocked() claude.Mode {
	if mode := claude.Mode(s.sum.Mode); mode.Valid() {
		return mode
	}
	return s.defMode
}

// permit is a turn's claude.Turn.Permit: the session's mode at this moment
// answers req, or the operator does in careful mode, within the timeout.
func (m *Manager) permit(ctx context.Context, s *sess, t *turn, req claude.PermissionRequest) claude.PermissionAnswer {
	tool := toolLabel(req.Tool)
	s.mu.Lock()
	verdict := claude.Decide(s.modeLocked(), req)
	data := event.PermissionData{
		RequestID: req.RequestID, Tool: req.Tool, Input: req.Display,
		Cwd: req.Cwd, Description: req.Description,
	}
	switch {
	case verdict == claude.VerdictAllow:
		s.mu.Unlock()
		m.metrics.Permissions.WithLabelValues(tool, "allowed").Inc()
		return claude.PermissionAnswer{Allow: true}
	case verdict == claude.VerdictDeny:
		data.State, data.By = event.PermissionDenied, string(claude.ModeReadOnly)
		m.emitLocked(s, t, event.New(event.Permission, data))
		s.mu.Unlock()
		m.metrics.Permissions.WithLabelValues(tool, "denied").Inc()
		return claude.PermissionAnswer{Message: claude.ReadOnlyMessage}
	case !uuid.Valid(req.RequestID) || s.perms[req.RequestID] != nil:
		// An answer could never be routed to it.
		s.mu.Unlock()
		m.log.Warn("permission request with an unusable id denied", "session", s.id)
		m.metrics.Permissions.WithLabelValues(tool, "denied").Inc()
		return claude.PermissionAnswer{Message: "This request could not be shown to the operator; the command was not run."}
	}
	p := &permission{id: req.RequestID, tool: tool, state: event.PermissionPending, answer: make(chan claude.PermissionAnswer, 1)}
	m.keepLocked(s, p)
	data.State = event.PermissionPending
	m.emitLocked(s, t, event.New(event.Permission, data))
	s.mu.Unlock()
	m.metrics.Permissions.WithLabelValues(tool, "asked").Inc()

	timer := time.NewTimer(m.permTimeout)
	defer timer.Stop()
	select {
	case a := <-p.answer:
		return a
	case <-timer.C:
	case <-ctx.Done():
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case a := <-p.answer:
		// Answered just now: the answer stands.
		return a
	default:
	}
	p.state = event.PermissionExpired
	data.State, data.By = event.PermissionExpired, "timeout"
	m.emitLocked(s, t, event.New(event.Permission, data))
	m.metrics.Permissions.WithLabelValues(tool, "expired").Inc()
	return claude.PermissionAnswer{Message: fmt.Sprintf(
		"The operator did not answer within %v: this command was not run. Do not run it another way; say what you wanted to run and why, and wait for the operator.",
		m.permTimeout)}
}

// keepLocked remembers p, forgetting the oldest answered requests beyond
// maxPermissionsKept. s.mu must be held.
func (m *Manager) keepLocked(s *sess, p *permission) {
	if s.perms == nil {
		s.perms = map[string]*permission{}
	}
	s.perms[p.id] = p
	s.permOrder = append(s.permOrder, p.id)
	for len(s.permOrder) > maxPermissionsKept {
		old := s.perms[s.permOrder[0]]
		if old != nil && old.state == event.PermissionPending {
			break
		}
		delete(s.perms, s.permOrder[0])
		s.permOrder = s.permOrder[1:]
	}
}

// AnswerPermission answers the pending request requestID of session id
// for actor: allow runs the command unchanged, deny refuses it with
// message (what the agent reads).
func (m *Manager) AnswerPermission(id, requestID string, allow bool, message, actor string) error {
	if len(message) > MaxPermissionMessage {
		return ErrMessageTooLarge
	}
	s, err := m.lookup(id)
	if err != nil {
		return err
	}
	if !uuid.Valid(requestID) {
		return ErrPermissionNotFound
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.perms[requestID]
	switch {
	case p == nil:
		return ErrPermissionNotFound
	case p.state != event.PermissionPending:
		return ErrPermissionAnswered
	}
	a := claude.PermissionAnswer{Allow: allow}
	p.state = event.PermissionAllowed
	if !allow {
		p.state = event.PermissionDenied
		a.Message = denyMessage(message)
	}
	p.answer <- a
	data := event.PermissionData{RequestID: p.id, Tool: p.tool, State: p.state, By: actor, Message: message}
	if s.turn != nil {
		m.emitLocked(s, s.turn, event.New(event.Permission, data))
	} else {
		m.appendLocked(s, event.New(event.Permission, data))
	}
	m.metrics.Permissions.WithLabelValues(p.tool, p.state).Inc()
	m.log.Info("permission answered", "session", s.id, "request", p.id, "state", p.state, "actor", actor)
	return nil
}

// denyMessage is what the agent reads when the operator denies.
func denyMessage(note string) string {
	msg := "The operator denied this command; it was not run. Do not try to reach the same result another way."
	if note != "" {
		msg += " The operator's note: " + note
	}
	return msg
}

// expireLocked marks every request still pending as expired when its turn
// ends. s.mu must be held.
func (m *Manager) expireLocked(s *sess) {
	for _, id := range s.permOrder {
		if p := s.perms[id]; p != nil && p.state == event.PermissionPending {
			p.state = event.PermissionExpired
		}
	}
}

// emitLocked appends e for turn t unless t has ended. s.mu must be held.
func (m *Manager) emitLocked(s *sess, t *turn, e event.Event) {
	if !t.ended {
		m.appendLocked(s, e)
	}
}

// toolLabel bounds the tool label of the permission metric.
func toolLabel(tool string) string {
	for _, known := range []string{"Bash", "Read", "Grep", "Glob"} {
		if tool == known {
			return tool
		}
	}
	return "other"
}
