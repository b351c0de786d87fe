package notify

import (
	"encoding/json"

	"breakglass/internal/event"
)

// permissionData is the part of a `permission` event a message may use:
// the tool's name and the state, never its input.
type permissionData struct {
	Tool  string `json:"tool"`
	State string `json:"state"`
}

// Permission states this package reads (the `permission` event's).
const permissionPending = "pending"

// MessageFor maps a session event to the message it calls for, if any: an
// approval or permission waiting (whoever is attached: the operator may be
// looking at another session), or a turn that ended while no client was
// attached. attached is the number of clients attached to the session
// when the event was appended.
func MessageFor(sessionID string, e event.Event, attached int) (Message, bool) {
	switch e.Type {
	case event.Approval:
		var a event.ApprovalData
		if json.Unmarshal(e.Data, &a) != nil || a.State != event.ApprovalPending {
			return Message{}, false
		}
		return Approval(sessionID, a.Verb), true
	case event.Type("permission"):
		var p permissionData
		if json.Unmarshal(e.Data, &p) != nil || p.State != permissionPending {
			return Message{}, false
		}
		return Permission(sessionID, p.Tool), true
	case event.Done:
		if attached > 0 {
			return Message{}, false
		}
		var d event.DoneData
		if json.Unmarshal(e.Data, &d) != nil {
			return Message{}, false
		}
		return TurnEnded(sessionID, string(d.Outcome)), true
	}
	return Message{}, false
}

// ObserveEvent is the session manager's hook: it queues the message a
// session event calls for. It never blocks (see Notify), so the manager may
// call it while holding a session's lock.
func (n *Notifier) ObserveEvent(sessionID string, e event.Event, attached int) {
	if m, ok := MessageFor(sessionID, e, attached); ok {
		n.Notify(m)
	}
}

// VMChanged queues the VM watch's message for a new state.
func (n *Notifier) VMChanged(to VMState) { n.Notify(VMChanged(to)) }
