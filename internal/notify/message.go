package notify

import (
	"regexp"

	"breakglass/internal/uuid"
)

// Kind is what a message is about; subscriptions choose the kinds they get.
type Kind string

// The kinds of messages. KindTest goes to every subscription whatever it
// chose.
const (
	KindApproval   Kind = "approval"   // an agent's mutating verb waits for the operator
	KindPermission Kind = "permission" // a tool call waits for the operator
	KindTurn       Kind = "turn"       // a turn ended while no client was attached
	KindVM         Kind = "vm"         // the VM watch saw the VM change state
	KindTest       Kind = "test"       // the settings page's test button
)

// Kinds are the kinds a subscription may choose, in the order the UI shows
// them; a subscription that names none gets all of them.
var Kinds = []Kind{KindApproval, KindPermission, KindTurn, KindVM}

func validKind(k Kind) bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// Message is one notification. It is the Web Push payload (JSON, read by the
// service worker) and, as Title, Body and an absolute Click URL, the ntfy
// message. Every constructor below builds it from names and states only.
type Message struct {
	Kind  Kind   `json:"kind"`
	Title string `json:"title"`
	Body  string `json:"body"`
	// URL is a path on the web (the page's session deep link, or "/").
	URL string `json:"url"`
	// Tag lets a later notification replace an earlier one of the same
	// thing (the service worker's tag, ntfy's tag).
	Tag string `json:"tag"`
}

// nameRE is what a verb or tool name may look like to appear in a message;
// anything else is replaced by a neutral word, so nothing an agent wrote
// can ride along.
var nameRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.:-]{0,47}$`)

func safeName(s, otherwise string) string {
	if nameRE.MatchString(s) {
		return s
	}
	return otherwise
}

// sessionURL is the page's deep link to a session ("/" for an id that is
// not a UUID v4).
func sessionURL(sessionID string) string {
	if !uuid.Valid(sessionID) {
		return "/"
	}
	return "/#/s/" + sessionID
}

// Approval is an agent's mutating verb waiting for the operator's tap.
func Approval(sessionID, verb string) Message {
	v := safeName(verb, "a power verb")
	return Message{
		Kind:  KindApproval,
		Title: "Approval waiting: " + v,
		Body:  "The agent asks to run " + v + " on the VM. Open the session to approve or deny.",
		URL:   sessionURL(sessionID),
		Tag:   "approval-" + sessionID,
	}
}

// Permission is a tool call the agent's CLI asks the operator about. Only
// the tool's name leaves the pod, never its input.
func Permission(sessionID, tool string) Message {
	t := safeName(tool, "a tool")
	return Message{
		Kind:  KindPermission,
		Title: "Permission waiting: " + t,
		Body:  "The agent asks to use " + t + ". Open the session to allow or deny.",
		URL:   sessionURL(sessionID),
		Tag:   "permission-" + sessionID,
	}
}

// turnOutcomes are the outcomes a message may name.
var turnOutcomes = map[string]string{
	"success":   "The agent's turn finished.",
	"error":     "The agent's turn ended with an error.",
	"cancelled": "The agent's turn was cancelled.",
	"timeout":   "The agent's turn timed out.",
}

// TurnEnded is a turn that ended while no client was attached.
func TurnEnded(sessionID, outcome string) Message {
	body, ok := turnOutcomes[outcome]
	if !ok {
		outcome, body = "error", turnOutcomes["error"]
	}
	return Message{
		Kind:  KindTurn,
		Title: "Turn ended: " + outcome,
		Body:  body + " Open the session to read it.",
		URL:   sessionURL(sessionID),
		Tag:   "turn-" + sessionID,
	}
}

// VMState is a VM state the watch reports.
type VMState string

// The states of the VM watch.
const (
	VMRunning     VMState = "running"
	VMStopped     VMState = "stopped"
	VMUnreachable VMState = "unreachable" // neither the keyholder nor the Proxmox host said
	VMLocked      VMState = "locked"      // Proxmox holds a lock on the VM (backup, migrate, …)
	VMUnknown     VMState = "unknown"     // no agreed reading yet
)

var vmBodies = map[VMState][2]string{
	VMRunning:     {"VM running again", "The VM is running again."},
	VMStopped:     {"VM stopped", "The VM is stopped. Open breakglass to start it or look at why."},
	VMUnreachable: {"VM unreachable", "The VM's status cannot be read (the Proxmox host or the keyholder does not answer)."},
	VMLocked:      {"VM locked", "Proxmox holds a lock on the VM; power verbs wait until it is released."},
}

// VMChanged is the VM watch's message for a new state.
func VMChanged(to VMState) Message {
	b, ok := vmBodies[to]
	if !ok {
		b = [2]string{"VM state unknown", "The VM's state is unknown."}
	}
	return Message{Kind: KindVM, Title: b[0], Body: b[1], URL: "/", Tag: "vm"}
}

// Test is the settings page's test notification.
func Test() Message {
	return Message{
		Kind:  KindTest,
		Title: "Test notification",
		Body:  "Notifications from breakglass reach this device.",
		URL:   "/",
		Tag:   "test",
	}
}
