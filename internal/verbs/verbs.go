package verbs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Name is a verb's wire name, exactly as a request carries it.
type Name string

// The verbs. Nothing else is ever a verb.
const (
	Status    Name = "status"
	Forensics Name = "forensics"
	Reset     Name = "reset"
	Stop      Name = "stop"
	Start     Name = "start"
	Cycle     Name = "cycle"
	// The recovery ladder: look and act when ssh to the devvm is dead.
	Screenshot Name = "screenshot"
	Console    Name = "console"
	Guest      Name = "guest"
	Tasks      Name = "tasks"
	Unlock     Name = "unlock"
	GuestExec  Name = "guest-exec"
)

// MaxLen is the longest input Parse looks at; anything longer is refused
// without being inspected further.
const MaxLen = 32

// DefaultVMID is the Proxmox VM breakglass guards unless configured otherwise.
const DefaultVMID = 102

// Request body caps, per verb (Verb.MaxBody).
const (
	// MaxBody is the request body cap of every verb without arguments.
	MaxBody = 4 << 10
	// MaxBodyArgs is the request body cap of guest-exec, whose argv rides
	// in the body.
	MaxBodyArgs = 16 << 10
)

// Output caps, per verb (Verb.MaxOutput).
const (
	// MaxTextOutput caps the text output of every verb but screenshot.
	MaxTextOutput = 1 << 20
	// MaxImageOutput caps screenshot's PNG; a larger one is refused, never
	// cut.
	MaxImageOutput = 8 << 20
)

// ContentTypePNG is screenshot's output type.
const ContentTypePNG = "image/png"

// Verb is one row of the table.
type Verb struct {
	// Name is the verb's exact wire name.
	Name Name
	// Mutating says whether the verb changes the VM's state. Mutating verbs
	// are serialised, confirmed in the UI, need operator presence and are
	// subject to the agent policy.
	Mutating bool
	// TakesArgs says whether the verb takes an argv (guest-exec alone);
	// every other verb refuses arguments. See CheckArgs.
	TakesArgs bool
	// ContentType is the type of the verb's output: "" for text (UTF-8,
	// carried as `output`), ContentTypePNG for screenshot (carried as
	// `output_base64`).
	ContentType string
	// MaxBody caps the verb's request body, in bytes.
	MaxBody int64
	// MaxOutput caps the verb's output, in bytes. Text above it is cut and
	// the cut reported; an image above it is refused.
	MaxOutput int
	// Summary says in a few words what the verb does, for confirms and docs.
	Summary string
	// qm holds the qm argument lists run in order, with vmidArg standing for
	// the configured VM id. Verbs assembled by pve-gate itself (forensics,
	// the ladder's look verbs, guest-exec) have none.
	qm [][]string
}

// vmidArg marks where QMArgs puts the VM id.
const vmidArg = "\x00vmid"

// row fills the caps every verb shares.
func row(v Verb) Verb {
	if v.MaxBody == 0 {
		v.MaxBody = MaxBody
	}
	if v.MaxOutput == 0 {
		v.MaxOutput = MaxTextOutput
	}
	return v
}

var table = []Verb{
	row(Verb{Name: Status, Summary: "show the VM's state (qm status --verbose)",
		qm: [][]string{{"status", vmidArg, "--verbose"}}}),
	row(Verb{Name: Forensics, Summary: "read-only evidence: qm state and config, the QEMU process and monitor, host memory, storage, kernel messages"}),
	row(Verb{Name: Reset, Mutating: true, Summary: "press the reset button: same QEMU process, fast; fixes a hung guest kernel",
		qm: [][]string{{"reset", vmidArg}}}),
	row(Verb{Name: Stop, Mutating: true, Summary: "hard stop: kill the VM at once, like pulling the plug",
		qm: [][]string{{"stop", vmidArg}}}),
	row(Verb{Name: Start, Mutating: true, Summary: "start the VM",
		qm: [][]string{{"start", vmidArg}}}),
	row(Verb{Name: Cycle, Mutating: true, Summary: "hard stop, then start a fresh QEMU process; fixes a wedged QEMU (stuck I/O, dead monitor)",
		qm: [][]string{{"stop", vmidArg}, {"start", vmidArg}}}),
	row(Verb{Name: Screenshot, ContentType: ContentTypePNG, MaxOutput: MaxImageOutput,
		Summary: "a PNG of the VM's screen: kernel panics, emergency-mode prompts, GRUB, fsck questions"}),
	row(Verb{Name: Console, Summary: "read the VM's serial console for 3 s (writes nothing)"}),
	row(Verb{Name: Guest, Summary: "ask the QEMU guest agent: ping, OS, filesystems, network; proves the guest OS lives when ssh is dead"}),
	row(Verb{Name: Tasks, Summary: "the VM's recent Proxmox tasks and its lock"}),
	row(Verb{Name: Unlock, Mutating: true, Summary: "remove a stale Proxmox lock (backup, snapshot) that keeps the VM from starting",
		qm: [][]string{{"unlock", vmidArg}}}),
	row(Verb{Name: GuestExec, Mutating: true, TakesArgs: true, MaxBody: MaxBodyArgs,
		Summary: "run one command (an argv, no shell) inside the guest through the QEMU guest agent"}),
}

// ErrUnknown is returned (wrapped) by Parse for anything that is not exactly
// one of the verb names.
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

// check applies the shape rules ([a-z-], at most MaxLen bytes) before the
// table lookup, so a refusal never echoes more than MaxLen bytes of hostile
// input.
func check(s string) error {
	switch {
	case s == "":
		return errors.New("(empty)")
	case len(s) > MaxLen:
		return fmt.Errorf("(%d bytes, longer than %d)", len(s), MaxLen)
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && c != '-' {
			// Echo up to the first bad byte only: quoted, 32 bytes of
			// non-ASCII would grow fourfold.
			more := ""
			if i+1 < len(s) {
				more = "…"
			}
			return fmt.Errorf("%q%s (byte %d is not a-z or -)", s[:i+1], more, i)
		}
	}
	return nil
}

// QMArgs returns the qm argument lists (without the qm binary) the verb runs
// for the given VM id, in order. Verbs pve-gate assembles itself (forensics,
// screenshot, console, guest, tasks, guest-exec) return nil; guest-exec's
// command is GuestExecQMArgs.
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

// GuestExecTimeout is the --timeout, in seconds, qm guest exec gets.
const GuestExecTimeout = 60

// GuestExecQMArgs returns the qm arguments of guest-exec for an argv that
// ValidateArgs accepted: `guest exec <vmid> --timeout 60 -- <argv…>`. The
// argv follows "--" unchanged, element for element.
func GuestExecQMArgs(vmid int, argv []string) []string {
	out := []string{"guest", "exec", strconv.Itoa(vmid), "--timeout", strconv.Itoa(GuestExecTimeout), "--"}
	return append(out, argv...)
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
