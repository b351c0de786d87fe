package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/landlock-lsm/go-landlock/landlock"
	ll "github.com/landlock-lsm/go-landlock/landlock/syscall"
)

// Level says how much of the sandbox holds.
type Level string

// Levels of Status.
const (
	// LevelFull: every promise holds (ABI FullABI or later).
	LevelFull Level = "full"
	// LevelPartial: Landlock confines files, but some ABI feature is
	// missing (see Status.Missing).
	LevelPartial Level = "partial"
	// LevelMissing: no Landlock at all: the agent is not confined.
	LevelMissing Level = "missing"
)

// Status is what the sandbox gets on this kernel under a policy's MaxABI.
type Status struct {
	// ABI is the Landlock ABI in effect: the kernel's, capped by MaxABI
	// and LatestABI; 0 when there is none.
	ABI int `json:"abi"`
	// Kernel is the kernel's Landlock ABI (0: none or disabled).
	Kernel int `json:"kernel_abi"`
	// Level sums it up.
	Level Level `json:"level"`
	// Missing names what the agent is not kept from, in words.
	Missing []string `json:"missing,omitempty"`
}

// KernelABI returns the kernel's Landlock ABI version, 0 when Landlock is
// not available.
func KernelABI() int {
	v, err := ll.LandlockGetABIVersion()
	if err != nil || v < 0 {
		return 0
	}
	return v
}

// Probe returns the Status a policy with maxABI gets on this kernel.
func Probe(maxABI int) Status {
	return statusFor(KernelABI(), maxABI)
}

// features are what each ABI level adds that the sandbox relies on.
var features = []struct {
	abi  int
	what string
}{
	{1, "file access (reading the web's files, writing outside its own folders)"},
	{2, "moving files between folders"},
	{3, "truncating files"},
	{4, "TCP connect and bind (reaching the web's port)"},
	{5, "ioctl on devices"},
	{6, "signals and abstract Unix sockets outside the sandbox"},
}

// statusFor is Probe for a given kernel ABI.
func statusFor(kernel, maxABI int) Status {
	abi := min(kernel, LatestABI)
	switch {
	case maxABI == NoLandlock || abi < 0:
		abi = 0
	case maxABI > 0:
		abi = min(abi, maxABI)
	}
	s := Status{ABI: abi, Kernel: kernel}
	for _, f := range features {
		if abi < f.abi {
			s.Missing = append(s.Missing, f.what)
		}
	}
	switch {
	case abi == 0:
		s.Level = LevelMissing
	case abi < FullABI:
		s.Level = LevelPartial
	default:
		s.Level = LevelFull
	}
	return s
}

// String says the status in one line, for the log and /readyz.
func (s Status) String() string {
	switch s.Level {
	case LevelFull:
		return fmt.Sprintf("Landlock ABI %d: the agent is confined", s.ABI)
	case LevelMissing:
		return fmt.Sprintf("no Landlock (kernel ABI %d): the agent is NOT confined", s.Kernel)
	}
	return fmt.Sprintf("Landlock ABI %d (kernel %d): the agent is confined partly; not restricted: %s",
		s.ABI, s.Kernel, strings.Join(s.Missing, "; "))
}

// config is go-landlock's preset for abi (1 to LatestABI).
func config(abi int) landlock.Config {
	return [...]landlock.Config{landlock.V1, landlock.V2, landlock.V3, landlock.V4, landlock.V5, landlock.V6, landlock.V7}[abi-1]
}

// Restrict confines the calling process (every thread) and whatever it
// execs under p, best effort: what the kernel lacks is left out and the
// returned Status says so. An error means nothing usable was enforced: the
// caller must not run the program.
func Restrict(p Policy) (Status, error) {
	if err := p.Validate(); err != nil {
		return Status{}, err
	}
	st := Probe(p.MaxABI)
	if st.ABI == 0 {
		return st, nil
	}
	rules, err := p.rules(st.ABI)
	if err != nil {
		return st, err
	}
	if err := config(st.ABI).BestEffort().Restrict(rules...); err != nil {
		return st, fmt.Errorf("landlock: %w", err)
	}
	return st, nil
}

// Access rights of the rules, by what they are for.
const (
	readFile = ll.AccessFSReadFile
	readDir  = ll.AccessFSReadFile | ll.AccessFSReadDir
)

// rules turns the policy into Landlock rules for abi; a directory and a
// file take different rights, so each path is looked at first.
func (p Policy) rules(abi int) ([]landlock.Rule, error) {
	var rules []landlock.Rule
	for _, path := range p.ReadExec {
		isDir, ok, err := kind(path)
		switch {
		case err != nil:
			return nil, err
		case !ok:
		case isDir:
			rules = append(rules, landlock.RODirs(path))
		default:
			rules = append(rules, landlock.ROFiles(path))
		}
	}
	for _, path := range p.ReadOnly {
		isDir, ok, err := kind(path)
		switch {
		case err != nil:
			return nil, err
		case !ok:
		case isDir:
			rules = append(rules, landlock.PathAccess(readDir, path))
		default:
			rules = append(rules, landlock.PathAccess(readFile, path))
		}
	}
	for _, path := range p.ReadWrite {
		isDir, ok, err := kind(path)
		if err != nil {
			return nil, err
		}
		if !ok || !isDir {
			return nil, fmt.Errorf("%w: read_write %s is not a directory", ErrPolicy, path)
		}
		rw := landlock.RWDirs(path)
		if abi >= 2 {
			// Moving a file between two of its own folders is harmless;
			// without "refer" it fails with EXDEV. (Asking for it under
			// ABI 1 would undo the whole ruleset.)
			rw = rw.WithRefer()
		}
		rules = append(rules, rw)
	}
	for _, path := range p.Devices {
		isDir, ok, err := kind(path)
		switch {
		case err != nil:
			return nil, err
		case !ok:
		case isDir:
			return nil, fmt.Errorf("%w: device %s is a directory", ErrPolicy, path)
		default:
			rules = append(rules, landlock.RWFiles(path))
		}
	}
	// Port rules exist from ABI 4; go-landlock refuses them (rather than
	// dropping them) under a config without network rights
	// (TestDowngrade guards this).
	for _, port := range p.ConnectTCP {
		if abi >= 4 {
			rules = append(rules, landlock.ConnectTCP(port))
		}
	}
	return rules, nil
}

// kind stats path: whether it is a directory, whether it exists.
func kind(path string) (isDir, exists bool, err error) {
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("sandbox: %w", err)
	}
	return fi.IsDir(), true, nil
}
