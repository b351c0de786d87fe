package pvegate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"

	"breakglass/internal/verbs"
)

// Exit codes of pve-gate besides qm's own status, which is passed through.
const (
	// ExitOK: the verb ran and its last qm command exited 0.
	ExitOK = 0
	// ExitRefused: the request is not exactly one of the verbs. Nothing ran.
	ExitRefused = 2
	// ExitBusy: another mutating verb holds the host lock. Nothing ran; try
	// again when it is done.
	ExitBusy = 75
	// ExitConfig: pve-gate itself is misconfigured (flags, lock file).
	ExitConfig = 78
	// ExitTimeout: a command passed its timeout and was killed, or cycle's
	// VM never said stopped (then start was not run).
	ExitTimeout = 124
	// ExitNoRun: a command could not be started (missing, not executable).
	ExitNoRun = 125
)

// DefaultQM is where Proxmox installs qm.
const DefaultQM = "/usr/sbin/qm"

// DefaultPvesh is where Proxmox installs pvesh.
const DefaultPvesh = "/usr/bin/pvesh"

// DefaultRunDir is the root-only folder under which screenshot makes its
// own temporary folder.
const DefaultRunDir = "/run/pve-gate"

// DefaultSerial returns where Proxmox puts the serial0 socket of a VM
// configured with `serial0: socket`.
func DefaultSerial(vmid int) string {
	return "/var/run/qemu-server/" + strconv.Itoa(vmid) + ".serial0"
}

// Defaults of Config's durations, chosen so the harshest verb (cycle: stop,
// wait, start) ends within the keyholder's default verb timeout of 120s.
const (
	DefaultCommandTimeout = 45 * time.Second
	DefaultSectionTimeout = 10 * time.Second
	DefaultStopWait       = 25 * time.Second
	DefaultPollInterval   = time.Second
)

// Config is the gate's configuration. Its zero value is the production
// gate: VM 102, /usr/sbin/qm, real commands and files, the host lock file.
type Config struct {
	// VMID is the one VM the gate acts on; 0 means verbs.DefaultVMID.
	VMID int
	// QM is the absolute path of qm; "" means DefaultQM.
	QM string
	// Runner runs commands; nil means ExecRunner{}.
	Runner Runner
	// FS is the host's file system root, read by forensics (paths like
	// "proc/1/status"); nil means os.DirFS("/").
	FS fs.FS
	// Lock is the host lock of mutating verbs; nil means
	// FileLock{Path: DefaultLockPath}.
	Lock Locker
	// CommandTimeout bounds each command of a mutating verb and status;
	// 0 means DefaultCommandTimeout.
	CommandTimeout time.Duration
	// SectionTimeout bounds each forensics section and each status poll of
	// cycle; 0 means DefaultSectionTimeout.
	SectionTimeout time.Duration
	// StopWait bounds how long cycle waits for the VM to say stopped before
	// it gives up without starting it; 0 means DefaultStopWait.
	StopWait time.Duration
	// PollInterval is the pause between cycle's status polls; 0 means
	// DefaultPollInterval.
	PollInterval time.Duration
	// Pvesh is the absolute path of pvesh (tasks); "" means DefaultPvesh.
	Pvesh string
	// Serial is the VM's serial console socket (console); "" means
	// DefaultSerial(VMID).
	Serial string
	// RunDir is the root-only folder (0700, owned by the gate's user) in
	// which screenshot makes a fresh temporary folder for each dump; it is
	// created if missing. "" means DefaultRunDir.
	RunDir string
	// AllowGuestExec lets guest-exec run; false (the default) refuses it.
	AllowGuestExec bool
	// GuestTimeout bounds each guest agent command of guest; 0 means
	// DefaultGuestTimeout.
	GuestTimeout time.Duration
	// ConsoleWindow is how long console reads the serial socket; 0 means
	// DefaultConsoleWindow.
	ConsoleWindow time.Duration
	// After is the clock of those pauses; nil means time.After.
	After func(time.Duration) <-chan time.Time
	// Logger gets one line per call; nil discards.
	Logger hclog.Logger
}

// Gate runs verbs for one VM. It is safe for concurrent use: mutating verbs
// are serialised by the Locker, reads run side by side.
type Gate struct {
	vmid           int
	qm             string
	run            Runner
	fsys           fs.FS
	lock           Locker
	commandTimeout time.Duration
	sectionTimeout time.Duration
	stopWait       time.Duration
	pollInterval   time.Duration
	after          func(time.Duration) <-chan time.Time
	log            hclog.Logger
	pvesh          string
	serial         string
	runDir         string
	allowExec      bool
	guestTimeout   time.Duration
	consoleWindow  time.Duration
}

// New validates cfg and returns the gate.
func New(cfg Config) (*Gate, error) {
	g := &Gate{
		vmid:           cfg.VMID,
		qm:             cfg.QM,
		run:            cfg.Runner,
		fsys:           cfg.FS,
		lock:           cfg.Lock,
		commandTimeout: cfg.CommandTimeout,
		sectionTimeout: cfg.SectionTimeout,
		stopWait:       cfg.StopWait,
		pollInterval:   cfg.PollInterval,
		after:          cfg.After,
		log:            cfg.Logger,
		pvesh:          cfg.Pvesh,
		serial:         cfg.Serial,
		runDir:         cfg.RunDir,
		allowExec:      cfg.AllowGuestExec,
		guestTimeout:   cfg.GuestTimeout,
		consoleWindow:  cfg.ConsoleWindow,
	}
	if g.vmid == 0 {
		g.vmid = verbs.DefaultVMID
	}
	if err := verbs.CheckVMID(g.vmid); err != nil {
		return nil, fmt.Errorf("pvegate config: %w", err)
	}
	if g.qm == "" {
		g.qm = DefaultQM
	}
	if g.pvesh == "" {
		g.pvesh = DefaultPvesh
	}
	if g.serial == "" {
		g.serial = DefaultSerial(g.vmid)
	}
	if g.runDir == "" {
		g.runDir = DefaultRunDir
	}
	for _, p := range []struct{ name, path string }{
		{"qm", g.qm}, {"pvesh", g.pvesh}, {"serial", g.serial}, {"run dir", g.runDir},
	} {
		if !filepath.IsAbs(p.path) || filepath.Clean(p.path) != p.path {
			return nil, fmt.Errorf("pvegate config: %s path %q must be absolute and clean", p.name, p.path)
		}
	}
	if g.run == nil {
		g.run = ExecRunner{}
	}
	if g.fsys == nil {
		g.fsys = os.DirFS("/")
	}
	if g.lock == nil {
		g.lock = FileLock{Path: DefaultLockPath}
	}
	for _, d := range []struct {
		v   *time.Duration
		def time.Duration
		n   string
	}{
		{&g.commandTimeout, DefaultCommandTimeout, "command timeout"},
		{&g.sectionTimeout, DefaultSectionTimeout, "section timeout"},
		{&g.stopWait, DefaultStopWait, "stop wait"},
		{&g.pollInterval, DefaultPollInterval, "poll interval"},
		{&g.guestTimeout, DefaultGuestTimeout, "guest timeout"},
		{&g.consoleWindow, DefaultConsoleWindow, "console window"},
	} {
		if *d.v < 0 {
			return nil, fmt.Errorf("pvegate config: negative %s %v", d.n, *d.v)
		}
		if *d.v == 0 {
			*d.v = d.def
		}
	}
	if g.after == nil {
		g.after = time.After
	}
	if g.log == nil {
		g.log = hclog.NewNullLogger()
	}
	return g, nil
}

// VMID returns the VM the gate acts on.
func (g *Gate) VMID() int { return g.vmid }

// Request is one call of the gate.
type Request struct {
	// Command is the client's command line, SSH_ORIGINAL_COMMAND: exactly
	// a verb name, or guest-exec's line (verbs.ParseLine).
	Command string
	// Client says who called, for the log (SSH_CONNECTION or an address).
	Client string
}

// Run performs one call: it writes the verb's output to stdout, reasons and
// notes to stderr, logs one line, and returns the process exit code.
func (g *Gate) Run(ctx context.Context, req Request, stdout, stderr io.Writer) int {
	start := time.Now()
	v, argv, err := verbs.ParseLine(req.Command)
	if err == nil {
		err = g.available(v)
	}
	if err != nil {
		// verbs.ParseLine quotes at most verbs.MaxLen bytes of the input.
		fmt.Fprintf(stderr, "pve-gate: refused: %v\n", err)
		g.log.Warn("refused", "client", req.Client, "reason", err.Error(), "exit", ExitRefused)
		return ExitRefused
	}
	code := g.runVerb(ctx, v, argv, stdout, stderr)
	fields := []any{"client", req.Client, "verb", string(v.Name), "vmid", g.vmid,
		"exit", code, "duration_ms", time.Since(start).Milliseconds()}
	if argv != nil {
		// The host's journal keeps what ran in the guest.
		fields = append(fields, "args", argv)
	}
	g.log.Info("call", fields...)
	return code
}

// ErrNotAvailable is returned (wrapped) for a verb of the table this gate
// is configured not to run (guest-exec without AllowGuestExec).
var ErrNotAvailable = errors.New("verb not available on this host")

// available refuses the verbs of the table this gate does not run.
func (g *Gate) available(v verbs.Verb) error {
	if v.Name == verbs.GuestExec && !g.allowExec {
		return fmt.Errorf("%w: guest-exec is off (pve-gate runs without --allow-guest-exec)", ErrNotAvailable)
	}
	return nil
}

// runVerb dispatches a parsed verb.
func (g *Gate) runVerb(ctx context.Context, v verbs.Verb, argv []string, stdout, stderr io.Writer) int {
	switch v.Name {
	case verbs.Forensics:
		g.forensics(ctx, stdout)
		return ExitOK
	case verbs.Screenshot:
		return g.screenshot(ctx, stdout, stderr)
	case verbs.Console:
		return g.console(ctx, stdout, stderr)
	case verbs.Guest:
		return g.guest(ctx, stdout)
	case verbs.Tasks:
		return g.tasks(ctx, stdout, stderr)
	}
	if v.Mutating {
		unlock, err := g.lock.TryLock()
		if err != nil {
			fmt.Fprintf(stderr, "pve-gate: %v\n", err)
			if errors.Is(err, ErrBusy) {
				return ExitBusy
			}
			return ExitConfig
		}
		defer unlock()
	}
	switch v.Name {
	case verbs.Cycle:
		return g.cycle(ctx, stdout, stderr)
	case verbs.GuestExec:
		return g.guestExec(ctx, argv, stdout, stderr)
	}
	code := ExitOK
	for _, args := range v.QMArgs(g.vmid) {
		code = g.qmStep(ctx, args, stdout, stderr)
		if code != ExitOK {
			return code
		}
	}
	return code
}

// qmStep runs one qm command with the command timeout, prints its output,
// and maps the outcome to an exit code.
func (g *Gate) qmStep(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	res, err := g.qmRun(ctx, g.commandTimeout, args, "")
	stdout.Write(res.Output)
	if res.Truncated {
		fmt.Fprintf(stderr, "pve-gate: output of qm %s cut\n", strings.Join(args, " "))
	}
	return exitCode(res, err, "qm "+strings.Join(args, " "), g.commandTimeout, stderr)
}

// qmRun runs qm with args under its own timeout.
func (g *Gate) qmRun(ctx context.Context, timeout time.Duration, args []string, stdin string) (Result, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return g.run.Run(ctx, append([]string{g.qm}, args...), stdin)
}

// exitCode maps a command's outcome to the gate's exit code, saying on
// stderr why when the command did not simply exit.
func exitCode(res Result, err error, what string, timeout time.Duration, stderr io.Writer) int {
	switch {
	case err == nil:
		return res.ExitCode
	case errors.Is(err, ErrTimeout):
		fmt.Fprintf(stderr, "pve-gate: %s: killed after %v\n", what, timeout)
		return ExitTimeout
	case errors.Is(err, context.Canceled):
		fmt.Fprintf(stderr, "pve-gate: %s: cancelled\n", what)
		return ExitTimeout
	default:
		fmt.Fprintf(stderr, "pve-gate: %s: %v\n", what, err)
		return ExitNoRun
	}
}

// cycle is stop, then polling status until the VM says stopped (bounded by
// the stop wait), then start. It never starts a VM it has not seen stopped.
func (g *Gate) cycle(ctx context.Context, stdout, stderr io.Writer) int {
	id := strconv.Itoa(g.vmid)
	if code := g.qmStep(ctx, []string{"stop", id}, stdout, stderr); code != ExitOK {
		fmt.Fprintf(stderr, "pve-gate: cycle: stop failed (exit %d); not starting\n", code)
		return code
	}
	waitCtx, cancel := context.WithTimeout(ctx, g.stopWait)
	defer cancel()
	for {
		state, err := g.state(waitCtx)
		if err == nil && state == "stopped" {
			break
		}
		select {
		case <-waitCtx.Done():
			if ctx.Err() != nil {
				fmt.Fprintf(stderr, "pve-gate: cycle: cancelled while waiting for VM %d to stop; not starting\n", g.vmid)
				return ExitTimeout
			}
			fmt.Fprintf(stderr, "pve-gate: cycle: VM %d did not say stopped within %v (last: %s); not starting\n",
				g.vmid, g.stopWait, describeState(state, err))
			return ExitTimeout
		case <-g.after(g.pollInterval):
		}
	}
	fmt.Fprintf(stdout, "VM %d stopped; starting\n", g.vmid)
	return g.qmStep(ctx, []string{"start", id}, stdout, stderr)
}

// ErrNoStatus is returned by state when qm status prints no status line.
var ErrNoStatus = errors.New("no status line")

// state asks `qm status <vmid>` and returns the word after "status:".
func (g *Gate) state(ctx context.Context) (string, error) {
	res, err := g.qmRun(ctx, g.sectionTimeout, []string{"status", strconv.Itoa(g.vmid)}, "")
	if err != nil {
		return "", err
	}
	if res.ExitCode != 0 {
		return "", fmt.Errorf("qm status exit %d", res.ExitCode)
	}
	for _, line := range strings.Split(string(res.Output), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "status:"); ok {
			return strings.TrimSpace(rest), nil
		}
	}
	return "", ErrNoStatus
}

func describeState(state string, err error) string {
	if err != nil {
		return err.Error()
	}
	return "status " + state
}
