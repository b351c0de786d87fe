package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PolicyVar is the environment variable that carries the Policy (JSON) to
// the launcher. It is not secret: it says what the agent may touch, which
// the agent can find out anyway, and a policy can only narrow a domain,
// never widen the one a process already runs in.
const PolicyVar = "BREAKGLASS_SANDBOX"

// Subcommand is the web binary's first argument that makes it the
// launcher: `web sandbox -- <program> <args…>`.
const Subcommand = "sandbox"

// ShellName is the name (a symlink to the web binary) under which it is
// the Bash tool's shell prefix: `agent-shell "<command>"`.
const ShellName = "agent-shell"

// Shell is the shell ShellMain runs the tool command with.
const Shell = "/bin/bash"

// LatestABI is the highest Landlock ABI this package asks for: with it,
// files (read, write, execute, truncate, refer, device ioctl), TCP connect
// and bind, and the scoping of signals and abstract Unix sockets are all
// restricted. ABI 7 adds only audit flags and costs nothing to ask for.
const LatestABI = 7

// FullABI is the lowest Landlock ABI at which every promise of the
// sandbox holds (ABI 6: signals and abstract Unix sockets are scoped to
// the domain). Below it the sandbox is partial; at 0 it is missing.
const FullABI = 6

// NoLandlock as Policy.MaxABI runs the program with no Landlock domain at
// all (to test what the web says when the kernel has none).
const NoLandlock = -1

// DefaultSystemDirs are the system directories the agent may read and
// execute from. Missing ones are skipped.
var DefaultSystemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"}

// DefaultEtcFiles are the only files of /etc the agent may read (never all
// of /etc). Missing ones are skipped.
var DefaultEtcFiles = []string{
	"/etc/passwd", "/etc/group", "/etc/hosts", "/etc/host.conf", "/etc/resolv.conf",
	"/etc/nsswitch.conf", "/etc/gai.conf", "/etc/services", "/etc/protocols",
	"/etc/localtime", "/etc/timezone", "/etc/os-release", "/etc/ld.so.cache",
	"/etc/ssl", "/etc/ca-certificates", "/etc/alternatives", "/etc/bash.bashrc",
}

// DefaultProcFS are the kernel's views the CLI and tools read (their own
// /proc/self, CPU counts). Landlock itself keeps a confined process out of
// the /proc/<pid> entries of processes outside its domain.
var DefaultProcFS = []string{"/proc", "/sys"}

// DefaultDevices are the device files the agent may read and write.
var DefaultDevices = []string{"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"}

// ErrPolicy: a Policy is not usable.
var ErrPolicy = errors.New("invalid sandbox policy")

// Policy says what a confined process may do. The zero value allows
// nothing at all (no file, no port) under the highest ABI the kernel has.
type Policy struct {
	// ReadExec are directories or files the process may read and execute:
	// the system directories, the claude install, the web binary (the
	// wrappers point at it) and the web-owned folder with the ssh config,
	// the wrappers and known_hosts. Missing paths are skipped.
	ReadExec []string `json:"read_exec,omitempty"`
	// ReadOnly are directories or files it may only read (the named /etc
	// files, /proc, /sys). Missing paths are skipped.
	ReadOnly []string `json:"read_only,omitempty"`
	// ReadWrite are directories it may read, write and execute in: the
	// session's own home, tmp and work folders. They must exist.
	ReadWrite []string `json:"read_write,omitempty"`
	// Devices are device files it may read and write. Missing ones are
	// skipped.
	Devices []string `json:"devices,omitempty"`
	// ConnectTCP are the TCP ports it may connect to (ABI 4 and later);
	// every other connect, and every bind, is refused.
	ConnectTCP []uint16 `json:"connect_tcp,omitempty"`
	// MaxABI caps the Landlock ABI used: 0 means the highest the kernel has
	// (up to LatestABI), NoLandlock means none. A cap is for tests and for
	// working around a kernel bug; Status reports what it costs.
	MaxABI int `json:"max_abi,omitempty"`
}

// Validate checks every path is absolute and clean, and MaxABI in range.
func (p Policy) Validate() error {
	for _, l := range []struct {
		name  string
		paths []string
	}{{"read_exec", p.ReadExec}, {"read_only", p.ReadOnly}, {"read_write", p.ReadWrite}, {"devices", p.Devices}} {
		for _, path := range l.paths {
			if path == "" || !filepath.IsAbs(path) || filepath.Clean(path) != path || strings.ContainsRune(path, 0) {
				return fmt.Errorf("%w: %s: %q is not a clean absolute path", ErrPolicy, l.name, path)
			}
			if path == "/" {
				return fmt.Errorf("%w: %s: the whole filesystem", ErrPolicy, l.name)
			}
		}
	}
	if slices.Contains(p.ConnectTCP, 0) {
		return fmt.Errorf("%w: connect_tcp: port 0", ErrPolicy)
	}
	if p.MaxABI < NoLandlock || p.MaxABI > LatestABI {
		return fmt.Errorf("%w: max_abi %d: between %d and %d expected", ErrPolicy, p.MaxABI, NoLandlock, LatestABI)
	}
	return nil
}

// Encode returns the policy as the value of PolicyVar.
func (p Policy) Encode() (string, error) {
	if err := p.Validate(); err != nil {
		return "", err
	}
	b, err := json.Marshal(p)
	if err != nil {
		return "", fmt.Errorf("encode sandbox policy: %w", err)
	}
	return string(b), nil
}

// maxPolicy bounds an encoded policy.
const maxPolicy = 64 << 10

// Decode parses and validates a PolicyVar value. Unknown fields are
// refused: a policy this launcher does not fully understand is not
// applied.
func Decode(s string) (Policy, error) {
	if s == "" {
		return Policy{}, fmt.Errorf("%w: %s is empty", ErrPolicy, PolicyVar)
	}
	if len(s) > maxPolicy {
		return Policy{}, fmt.Errorf("%w: over %d bytes", ErrPolicy, maxPolicy)
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	var p Policy
	if err := dec.Decode(&p); err != nil {
		return Policy{}, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if dec.More() {
		return Policy{}, fmt.Errorf("%w: trailing data", ErrPolicy)
	}
	if err := p.Validate(); err != nil {
		return Policy{}, err
	}
	return p, nil
}

// Covers reports whether the policy lets the agent read (or write) path:
// whether path lies under one of its granted paths. The web checks its
// secret files with it before it starts.
// Symbolic links are resolved on both sides, as Landlock sees them.
func (p Policy) Covers(path string) bool {
	paths := resolved(filepath.Clean(path))
	for _, l := range [][]string{p.ReadExec, p.ReadOnly, p.ReadWrite, p.Devices} {
		for _, g := range l {
			for _, gr := range resolved(g) {
				for _, pr := range paths {
					if pr == gr || strings.HasPrefix(pr, strings.TrimSuffix(gr, "/")+"/") {
						return true
					}
				}
			}
		}
	}
	return false
}

// resolved is path, and its target when it resolves elsewhere.
func resolved(path string) []string {
	if r, err := filepath.EvalSymlinks(path); err == nil && r != path {
		return []string{path, r}
	}
	return []string{path}
}

// Connects reports whether the policy lets the agent connect to TCP port.
func (p Policy) Connects(port int) bool {
	return port > 0 && port < 1<<16 && slices.Contains(p.ConnectTCP, uint16(port))
}

// Agent describes what the web grants the agent beyond the system: its
// parts outside the system directories and the ports it needs.
type Agent struct {
	// Claude is the claude CLI's install folder (read and execute).
	Claude string
	// Executable is the web binary, which the wrappers and the shell
	// prefix point at (read and execute).
	Executable string
	// Dir is the web-owned folder with the ssh config, known_hosts and
	// the wrappers (read and execute, never write).
	Dir string
	// Ports are the TCP ports the agent may connect to: the API's, the
	// proxy's, the devvm's SSH port.
	Ports []uint16
	// MaxABI is Policy.MaxABI.
	MaxABI int
}

// Policy is the agent's base policy: the system directories, the named
// /etc files, /proc and /sys, the devices, a's folders and ports. The
// session's own folders come with Session.
func (a Agent) Policy() Policy {
	p := Policy{
		ReadExec:   append([]string{}, DefaultSystemDirs...),
		ReadOnly:   append(append([]string{}, DefaultEtcFiles...), DefaultProcFS...),
		Devices:    append([]string{}, DefaultDevices...),
		ConnectTCP: append([]uint16{}, a.Ports...),
		MaxABI:     a.MaxABI,
	}
	for _, path := range []string{a.Claude, a.Executable, a.Dir} {
		if path != "" {
			p.ReadExec = append(p.ReadExec, path)
		}
	}
	return p
}

// ConfigDirName is the folder in HOME that holds the claude CLI's own
// state (CLAUDE_CONFIG_DIR: its settings file, session store, shell
// snapshots): the one part of HOME the agent may write.
const ConfigDirName = ".claude"

// Session returns p with the session's own folders: TMPDIR, the work
// folder and HOME's ConfigDirName read-write, HOME itself read-only. A
// writable HOME would let the agent plant a ~/.bashrc or ~/.profile, which
// the CLI reads into the shell of every Bash command of later turns
// (TestRedTeam/bashrc).
func (p Policy) Session(home, tmp, work string) Policy {
	p.ReadOnly = append(append([]string{}, p.ReadOnly...), home)
	p.ReadWrite = append(append([]string{}, p.ReadWrite...), filepath.Join(home, ConfigDirName), tmp, work)
	return p
}

// InstallDir is the folder to grant for a CLI whose executable (symbolic
// links resolved) is bin: the folder holding it, or the npm package
// folder when it sits in a package's bin/ (package.json next to bin/).
func InstallDir(bin string) (string, error) {
	real, err := filepath.EvalSymlinks(bin)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", bin, err)
	}
	dir := filepath.Dir(real)
	if filepath.Base(dir) == "bin" {
		if _, err := os.Stat(filepath.Join(filepath.Dir(dir), "package.json")); err == nil {
			dir = filepath.Dir(dir)
		}
	}
	return dir, nil
}
