package verbs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Name is a verb's wire name, exactly as a request carries it.
type Name string

// The six verbs. Nothing else is ever a verb.
const (
	Status    Name = "status"
	Forensics Name = "forensics"
	Reset     Name = "reset"
	Stop      Name = "stop"
	Start     Name = "start"
	Cycle     Name = "cycle"
)

// MaxLen is the longest input Parse looks at; anything longer is refused
// without being inspected further.
const MaxLen = 32

// DefaultVMID is the Proxmox VM breakglass guards unless configured otherwise.
const DefaultVMID = 102

// Verb is one row of the table.
type Verb struct {
	// Name is the verb's exact wire name.
	Name Name
	// Mutating says whether the verb changes the VM's state. Mutating verbs
	// are serialised, confirmed in the UI and subject to the agent policy.
	Mutating bool
	// Summary says in a few words what the verb does, for confirms and docs.
	Summary string
	// qm holds the qm argument lists run in order, with vmidArg standing for
	// the configured VM id. Forensics has none: its sections are pve-gate's.
	qm [][]string
}

// vmidArg marks where QMArgs puts the VM id.
const vmidArg = "\x00vmid"

var table = []Verb{
	{Name: Status, Summary: "show the VM's state (qm status --verbose)",
		qm: [][]string{{"status", vmidArg, "--verbose"}}},
	{Name: Forensics, Summary: "read-only evidence: qm state and config, the QEMU process and monitor, host memory, storage, kernel messages"},
	{Name: Reset, Mutating: true, Summary: "press the reset button: same QEMU process, fast; fixes a hung guest kernel",
		qm: [][]string{{"reset", vmidArg}}},
	{Name: Stop, Mutating: true, Summary: "hard stop: kill the VM at once, like pulling the plug",
		qm: [][]string{{"stop", vmidArg}}},
	{Name: Start, Mutating: true, Summary: "start the VM",
		qm: [][]string{{"start", vmidArg}}},
	{Name: Cycle, Mutating: true, Summary: "hard stop, then start a fresh QEMU process; fixes a wedged QEMU (stuck I/O, dead monitor)",
		qm: [][]string{{"stop", vmidArg}, {"start", vmidArg}}},
}

// ErrUnknown is returned (wrapped) by Parse for anything that is not exactly
// one of the six verb names.
var ErrUnknown = errors.New("unknown verb")

// All returns the table in its fixed order. The caller owns the slice.
func All() []Verb {
	out := make([]Verb, len(table))
	copy(out, table)
	return out
}

// Names returns the verb names in table order.
func Names() []Name {
	out := make([]Name, len(table))
	for i, v := range table {
		out[i] = v.Name
	}
	return out
}

// allowed is the list quoted in every refusal.
var allowed = func() string {
	names := make([]string, len(table))
	for i, v := range table {
		names[i] = string(v.Name)
	}
	return strings.Join(names, ", ")
}()

// Parse returns the verb whose name is exactly s. Anything else, including
// the right name with spaces, other case or arguments, is refused with an
// error that wraps ErrUnknown and names the allowed verbs. Parse does no I/O.
func Parse(s string) (Verb, error) {
	if err := check(s); err != nil {
		return Verb{}, fmt.Errorf("%w %s: allowed verbs are %s", ErrUnknown, err, allowed)
	}
	for _, v := range table {
		if string(v.Name) == s {
			return v, nil
		}
	}
	return Verb{}, fmt.Errorf("%w %q: allowed verbs are %s", ErrUnknown, s, allowed)
}

// check applies the shape rules before the table lookup, so a refusal never
// echoes more than MaxLen bytes of hostile input.
func check(s string) error {
	switch {
	case s == "":
		return errors.New("(empty)")
	case len(s) > MaxLen:
		return fmt.Errorf("(%d bytes, longer than %d)", len(s), MaxLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 'a' || c > 'z' {
			return fmt.Errorf("%q (byte %d is not a-z)", s, i)
		}
	}
	return nil
}

// QMArgs returns the qm argument lists (without the qm binary) the verb runs
// for the given VM id, in order. Forensics returns nil: its read-only
// sections are assembled by pve-gate.
func (v Verb) QMArgs(vmid int) [][]string {
	if len(v.qm) == 0 {
		return nil
	}
	id := strconv.Itoa(vmid)
	out := make([][]string, len(v.qm))
	for i, args := range v.qm {
		out[i] = make([]string, len(args))
		for j, a := range args {
			if a == vmidArg {
				a = id
			}
			out[i][j] = a
		}
	}
	return out
}

// ErrBadVMID is returned by CheckVMID for an id Proxmox would not accept.
var ErrBadVMID = errors.New("invalid vmid")

// CheckVMID reports whether id is a Proxmox VM id (100 to 999999999).
func CheckVMID(id int) error {
	if id < 100 || id > 999999999 {
		return fmt.Errorf("%w %d: must be between 100 and 999999999", ErrBadVMID, id)
	}
	return nil
}
