package agenthome

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"breakglass/internal/sandbox"
)

// Defaults of Config.
const (
	DefaultSocketDir           = "/run/breakglass"
	DefaultDevVMPort           = 22
	DefaultDevVMUser           = "breakglass"
	DefaultKnownHosts          = "/etc/breakglass/known_hosts"
	DefaultConnectTimeout      = 10 * time.Second
	DefaultServerAliveInterval = 15 * time.Second
	DefaultServerAliveCountMax = 3
	// DefaultRealSSH is the OpenSSH client the wrapper runs.
	DefaultRealSSH = "/usr/bin/ssh"
)

// HostAlias is the name the agent uses: `ssh devvm <command>`.
const HostAlias = "devvm"

// Commands are the names in Dir/bin, each a symlink to the web binary,
// which dispatches on the name it was invoked as: the agent's `ssh` and
// `pve`, and the Bash tool's shell prefix (sandbox.ShellName).
var Commands = []string{"ssh", "pve", sandbox.ShellName}

// RealSSHVar, when set in the wrapper's environment, names the real ssh
// client to run instead of DefaultRealSSH.
const RealSSHVar = "BREAKGLASS_REAL_SSH"

// ConfigVar is the wrapper's environment variable naming the ssh config
// (Paths.SSHConfig). OpenSSH takes ~ from the passwd entry, not $HOME, and
// the agent's HOME is its own to write: the config lives in Dir instead.
const ConfigVar = "BREAKGLASS_SSH_CONFIG"

// ErrConfig: the Config is not usable.
var ErrConfig = errors.New("invalid agent home config")

// Config says what to prepare. The zero value is refused (Dir and
// DevVMHost are required); every other field has a default.
type Config struct {
	// Dir is the web-owned folder the agent may only read, outside every
	// HOME, e.g. $BREAKGLASS_SESSIONS_DIR/agent. It is created (0700) if
	// missing.
	Dir string
	// Executable is the web binary the HOME/bin entries point at; empty
	// means os.Executable().
	Executable string
	// SocketDir holds the keyholder's agent.sock.
	SocketDir string
	// DevVMHost is the devvm's address (an IP: it must work with DNS down).
	DevVMHost string
	// DevVMPort and DevVMUser default to 22 and "breakglass".
	DevVMPort int
	DevVMUser string
	// KnownHosts is the pinned known_hosts file, copied into Dir at each
	// Prepare (a missing one gives an empty copy: ssh then refuses every
	// host).
	KnownHosts string
	// ConnectTimeout, ServerAliveInterval and ServerAliveCountMax bound how
	// long ssh waits for a dead devvm.
	ConnectTimeout      time.Duration
	ServerAliveInterval time.Duration
	ServerAliveCountMax int
}

// Paths are what Prepare made.
type Paths struct {
	// Dir is the folder itself (read-only to the agent).
	Dir string
	// BinDir goes first on the agent's PATH: ssh, pve and the shell prefix.
	BinDir string
	// SSHConfig is Dir/ssh_config (the wrapper's ConfigVar).
	SSHConfig string
	// KnownHosts is Dir/known_hosts, the copy the ssh config pins.
	KnownHosts string
	// Shell is BinDir/<sandbox.ShellName>: CLAUDE_CODE_SHELL_PREFIX.
	Shell string
}

// hostToken is what may appear as a host or user in the ssh config: no
// spaces, quotes, percent (token expansion) or line breaks.
var hostToken = regexp.MustCompile(`^[A-Za-z0-9._:\-\[\]]{1,253}$`)

func (cfg *Config) validate() error {
	if cfg.SocketDir == "" {
		cfg.SocketDir = DefaultSocketDir
	}
	if cfg.DevVMPort == 0 {
		cfg.DevVMPort = DefaultDevVMPort
	}
	if cfg.DevVMUser == "" {
		cfg.DevVMUser = DefaultDevVMUser
	}
	if cfg.KnownHosts == "" {
		cfg.KnownHosts = DefaultKnownHosts
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	if cfg.ServerAliveInterval <= 0 {
		cfg.ServerAliveInterval = DefaultServerAliveInterval
	}
	if cfg.ServerAliveCountMax <= 0 {
		cfg.ServerAliveCountMax = DefaultServerAliveCountMax
	}
	switch {
	case cfg.Dir == "" || !safePath(cfg.Dir):
		return fmt.Errorf("%w: Dir must be an absolute path ssh_config can quote, got %q", ErrConfig, cfg.Dir)
	case cfg.DevVMHost == "" || !hostToken.MatchString(cfg.DevVMHost):
		return fmt.Errorf("%w: devvm host %q", ErrConfig, cfg.DevVMHost)
	case !hostToken.MatchString(cfg.DevVMUser):
		return fmt.Errorf("%w: devvm user %q", ErrConfig, cfg.DevVMUser)
	case cfg.DevVMPort < 1 || cfg.DevVMPort > 65535:
		return fmt.Errorf("%w: devvm port %d", ErrConfig, cfg.DevVMPort)
	case !safePath(cfg.SocketDir):
		return fmt.Errorf("%w: socket dir %q", ErrConfig, cfg.SocketDir)
	case !safePath(cfg.KnownHosts):
		return fmt.Errorf("%w: known_hosts path %q", ErrConfig, cfg.KnownHosts)
	case cfg.Executable != "" && !filepath.IsAbs(cfg.Executable):
		return fmt.Errorf("%w: executable must be an absolute path, got %q", ErrConfig, cfg.Executable)
	}
	return nil
}

// safePath: absolute, and nothing ssh_config would split or expand
// (whitespace, quotes, '%' tokens, '~', '$').
func safePath(p string) bool {
	return filepath.IsAbs(p) && !strings.ContainsAny(p, " \t\r\n\"'%~$#\\")
}

// SSHConfig renders the ssh config for Host devvm.
func SSHConfig(cfg Config) (string, error) {
	if err := cfg.validate(); err != nil {
		return "", err
	}
	return renderSSHConfig(cfg), nil
}

func renderSSHConfig(cfg Config) string {
	var b strings.Builder
	b.WriteString("# Written by breakglass at start; changes are overwritten.\n")
	b.WriteString("# The devvm key lives in the keyholder's agent: no IdentityFile here.\n")
	fmt.Fprintf(&b, "Host %s\n", HostAlias)
	fmt.Fprintf(&b, "  HostName %s\n", cfg.DevVMHost)
	fmt.Fprintf(&b, "  Port %d\n", cfg.DevVMPort)
	fmt.Fprintf(&b, "  User %s\n", cfg.DevVMUser)
	fmt.Fprintf(&b, "  IdentityAgent %s\n", filepath.Join(cfg.SocketDir, "agent.sock"))
	// WARNING: no IdentitiesOnly. With it, ssh offers an agent's key only
	// when it matches an IdentityFile, and there is none: the login fails
	// (TestWrapperLogsIn guards this). The agent holds exactly one key.
	b.WriteString("  IdentityFile none\n")
	b.WriteString("  StrictHostKeyChecking yes\n")
	fmt.Fprintf(&b, "  UserKnownHostsFile %s\n", knownHostsCopy(cfg))
	b.WriteString("  GlobalKnownHostsFile /dev/null\n")
	b.WriteString("  UpdateHostKeys no\n")
	b.WriteString("  CheckHostIP no\n")
	b.WriteString("  ForwardAgent no\n")
	b.WriteString("  ForwardX11 no\n")
	b.WriteString("  ClearAllForwardings yes\n")
	b.WriteString("  PasswordAuthentication no\n")
	b.WriteString("  KbdInteractiveAuthentication no\n")
	b.WriteString("  BatchMode yes\n")
	fmt.Fprintf(&b, "  ConnectTimeout %d\n", int(cfg.ConnectTimeout.Seconds()))
	fmt.Fprintf(&b, "  ServerAliveInterval %d\n", int(cfg.ServerAliveInterval.Seconds()))
	fmt.Fprintf(&b, "  ServerAliveCountMax %d\n", cfg.ServerAliveCountMax)
	b.WriteString("\n# Nothing else is reachable by name.\n")
	b.WriteString("Host *\n")
	b.WriteString("  StrictHostKeyChecking yes\n")
	fmt.Fprintf(&b, "  UserKnownHostsFile %s\n", knownHostsCopy(cfg))
	b.WriteString("  ForwardAgent no\n")
	b.WriteString("  BatchMode yes\n")
	return b.String()
}

// knownHostsCopy is where Prepare copies the known_hosts file.
func knownHostsCopy(cfg Config) string { return filepath.Join(cfg.Dir, "known_hosts") }

// Prepare writes the folder. It is idempotent: files are replaced
// atomically and symlinks re-pointed, so a restart with a new config or a
// moved binary takes effect.
func Prepare(cfg Config) (Paths, error) {
	if err := cfg.validate(); err != nil {
		return Paths{}, err
	}
	exe := cfg.Executable
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return Paths{}, fmt.Errorf("find own executable: %w", err)
		}
	}
	p := Paths{
		Dir:        cfg.Dir,
		BinDir:     filepath.Join(cfg.Dir, "bin"),
		SSHConfig:  filepath.Join(cfg.Dir, "ssh_config"),
		KnownHosts: knownHostsCopy(cfg),
	}
	p.Shell = filepath.Join(p.BinDir, sandbox.ShellName)
	for _, d := range []string{cfg.Dir, p.BinDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return Paths{}, fmt.Errorf("create %s: %w", d, err)
		}
	}
	kh, err := os.ReadFile(cfg.KnownHosts)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return Paths{}, fmt.Errorf("read known_hosts: %w", err)
	}
	if err := writeFileAtomic(p.KnownHosts, kh, 0o644); err != nil {
		return Paths{}, err
	}
	// ssh refuses a config that others can write; keep it 0600.
	if err := writeFileAtomic(p.SSHConfig, []byte(renderSSHConfig(cfg)), 0o600); err != nil {
		return Paths{}, err
	}
	for _, name := range Commands {
		if err := symlinkAtomic(exe, filepath.Join(p.BinDir, name)); err != nil {
			return Paths{}, err
		}
	}
	return p, nil
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, werr := f.Write(data)
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Chmod(tmp, mode)
	}
	if werr == nil {
		werr = os.Rename(tmp, path)
	}
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, werr)
	}
	return nil
}

func symlinkAtomic(target, path string) error {
	tmp := path + ".new"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("link %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("link %s: %w", path, err)
	}
	return nil
}

// SSHArgv is the real ssh's argv for the wrapper invoked with args
// (args[0] is the name it was invoked as): `-F <config>` first, then the
// agent's arguments unchanged.
func SSHArgv(config string, args []string) []string {
	argv := []string{"ssh", "-F", config}
	if len(args) > 1 {
		argv = append(argv, args[1:]...)
	}
	return argv
}

// SSHMain is the `ssh` entry of the agent's PATH: cmd/web's main calls it
// when filepath.Base(os.Args[0]) == "ssh", as
// os.Exit(agenthome.SSHMain(os.Args, os.Environ(), os.Stderr)).
// It replaces the process with the real ssh (no shell), reading the config
// named by ConfigVar; it returns only on failure (exit status 255, as ssh
// itself uses).
func SSHMain(args, environ []string, stderr io.Writer) int {
	config := lookup(environ, ConfigVar)
	if config == "" || !filepath.IsAbs(config) {
		fmt.Fprintf(stderr, "ssh (breakglass wrapper): %s is not set to the agent's ssh config\n", ConfigVar)
		return 255
	}
	real := lookup(environ, RealSSHVar)
	if real == "" {
		real = DefaultRealSSH
	}
	if !filepath.IsAbs(real) {
		fmt.Fprintf(stderr, "ssh (breakglass wrapper): %s must be an absolute path\n", RealSSHVar)
		return 255
	}
	err := syscall.Exec(real, SSHArgv(config, args), environ)
	fmt.Fprintf(stderr, "ssh (breakglass wrapper): exec %s: %v\n", real, err)
	return 255
}

func lookup(environ []string, key string) string {
	v := ""
	for _, kv := range environ {
		if val, ok := strings.CutPrefix(kv, key+"="); ok {
			v = val
		}
	}
	return v
}
