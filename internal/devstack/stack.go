package devstack

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"breakglass/internal/testing/devvmsim"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/verbs"
)

// Config is the local stack's configuration. The zero value runs on
// 127.0.0.1:8080 with binaries from the folder of the running executable.
type Config struct {
	// Listen is the edge's address (what the browser opens). It must be a
	// loopback address; "" means 127.0.0.1:8080. Port 0 picks a free port.
	Listen string
	// BinDir holds the keyholder and web binaries ("" = this executable's
	// folder, where `make build` puts them all).
	BinDir string
	// ClaudeBin is the claude CLI the web runs ("" = "claude" from PATH).
	ClaudeBin string
	// Environ is the environment the web may draw on (PATH, ANTHROPIC_*…);
	// the web filters it again before it reaches claude.
	Environ []string
	// User is the identity the edge asserts ("" = "operator").
	User string
	// Out receives the children's output, each line prefixed with its name.
	Out io.Writer
	// Logger gets the stack's own lines; nil discards.
	Logger hclog.Logger
	// Incident is the trouble the simulated VM starts in, so every rung of
	// the recovery ladder can be seen: "" (none), "sshd-down" (ssh fails,
	// the guest agent answers), "panic" (a kernel panic on the screen),
	// "agent-dead" (no guest agent), "locked" (a stale backup lock),
	// "stopped".
	Incident string
	// Presence is the keyholder's BREAKGLASS_PRESENCE: "" means required
	// (with enrollment open, the code in Stack.EnrollCode); "off" only
	// for tests that are not about presence.
	Presence string
	// Operators are operators-file lines enrolled before start (tests with
	// a software passkey).
	Operators []string
	// PVE is the Proxmox host the keyholder reaches: "" (PVESimulated)
	// runs the real pve-gate logic against the simulated VM;
	// PVEBlackholed accepts TCP and never answers; PVEDown is a closed
	// port.
	PVE string
	// DevvmDown closes the devvm's port (its host key stays pinned).
	DevvmDown bool
	// APIBaseURL, when set, is the web's ANTHROPIC_BASE_URL (an API
	// double in tests), whatever Environ says.
	APIBaseURL string
	// WebEnv and KeyholderEnv are extra KEY=value entries for each binary,
	// after the stack's own (a later entry wins).
	WebEnv, KeyholderEnv []string
	// Readable rewrites the children's JSON log lines as one short line
	// per event for a person at a terminal (`make run`); the default
	// passes them as they are.
	Readable bool
	// Origins are more origins the keyholder accepts besides the edge's
	// (tests that put a proxy of their own in front: http://localhost:<port>).
	Origins []string
	// RunAs, when set, is the user both binaries run as; the stack's
	// folder is handed to it (tests that run as root and want the
	// deployment's non-root uid).
	RunAs *syscall.Credential
	// StopGrace is how long a binary gets between SIGTERM and SIGKILL
	// (0 = 5 s); Close reports a binary that needed SIGKILL.
	StopGrace time.Duration
}

// The Proxmox hosts Config.PVE names.
const (
	PVESimulated  = ""
	PVEBlackholed = "blackholed"
	PVEDown       = "down"
)

// Incidents are the values Config.Incident takes besides "".
var Incidents = []string{"sshd-down", "panic", "agent-dead", "locked", "stopped"}

// applyIncident puts the simulated VM into the named trouble.
func applyIncident(vm *pvesim.VM, incident string) error {
	switch incident {
	case "":
	case "sshd-down":
		vm.SetSSHD(false)
	case "panic":
		vm.SetPanicked(true)
	case "agent-dead":
		vm.SetGuestAgent(false)
	case "locked":
		vm.SetLock("backup")
	case "stopped":
		vm.SetState(pvesim.Stopped)
	default:
		return fmt.Errorf("unknown incident %q: one of %s", incident, strings.Join(Incidents, ", "))
	}
	return nil
}

// RPID is the local stack's WebAuthn relying party id: a host name, as
// WebAuthn needs (an IP address is not a valid RP ID).
const RPID = "localhost"

// DevvmUser is the login the simulated devvm accepts.
const DevvmUser = "breakglass"

// Stack is a local stack: the hosts around the two binaries, and the
// binaries once started.
type Stack struct {
	// URL is where the browser goes (the edge), once Start has run.
	URL string
	// Dir is the temporary folder with keys, sockets and sessions; it is
	// removed by Close.
	Dir string
	// SocketDir, SessionsDir and AgentDir are the keyholder's sockets, the
	// web's sessions and the agent's web-owned folder inside it.
	SocketDir, SessionsDir, AgentDir string
	// KnownHosts pins both hosts; PVEKey and DevvmKey are the keyholder's
	// private keys (files in Dir).
	KnownHosts, PVEKey, DevvmKey string
	// PVEAddr and DevvmAddr are the hosts' loopback addresses.
	PVEAddr, DevvmAddr string
	// VM is the simulated VM 102 behind the simulated Proxmox host.
	VM *pvesim.VM
	// PVE and Devvm are the simulated hosts (nil when blackholed or down).
	PVE   *pvesim.Server
	Devvm *devvmsim.Server
	// Blackholed receives once per connection the blackholed host accepts
	// (without blocking; nil unless Config.PVE is PVEBlackholed).
	Blackholed <-chan struct{}
	// MetricsURL is the web's metrics listener (the latest web started).
	MetricsURL string
	// Origin is the browser's origin, http://localhost:<port>.
	Origin string
	// OperatorsFile is the keyholder's operators file (in Dir).
	OperatorsFile string
	// EnrollCode is the one-time enrollment code the keyholder printed
	// (empty with presence off).
	EnrollCode string
	// WebURL is the web's own listener, without the edge stand-in's
	// identity header (for passkey sign-in tests).
	WebURL string

	cfg       Config
	blackhole *blackhole
	refused   []*refusedPort // the closed ports of hosts that are down
	ln        net.Listener   // the edge's, bound by New
	edge      *http.Server
	edgeDone  chan error
	keyholder *Process // the latest of each, for Done
	web       *Web
	mu        sync.Mutex // guards procs
	procs     []*Process // every child started, for Close
}

// Web is a running web binary.
type Web struct {
	*Process
	// URL is its listener (http://127.0.0.1:<port>, no trailing slash);
	// MetricsURL its metrics page.
	URL, MetricsURL string
}

// Start brings the whole stack up and returns once the edge serves the
// UI. On error, everything started so far is stopped and the folder
// removed.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, err := s.StartKeyholder(readyCtx); err != nil {
		return nil, err
	}
	if _, err := s.StartWeb(readyCtx); err != nil {
		return nil, err
	}
	s.URL = s.Origin + "/"
	webURL, _ := url.Parse(s.WebURL)
	s.edge = edgeServer(edge(webURL, s.cfg.User))
	s.edgeDone = make(chan error, 1)
	ln := s.ln
	s.ln = nil
	go func() { s.edgeDone <- s.edge.Serve(ln) }()
	return s, nil
}

// New builds the hosts, keys, pins and files, and binds the edge's
// address, but starts no binary: StartKeyholder and StartWeb do, as often
// as a test needs (a restart is another call). On error, everything is
// undone.
func New(cfg Config) (_ *Stack, err error) {
	cfg, err = withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "bg-stack-")
	if err != nil {
		return nil, fmt.Errorf("temp folder: %w", err)
	}
	s := &Stack{
		Dir:         dir,
		SocketDir:   filepath.Join(dir, "run"),
		SessionsDir: filepath.Join(dir, "sessions"),
		AgentDir:    filepath.Join(dir, "sessions", "agent"),
		VM:          pvesim.NewVM(verbs.DefaultVMID),
		cfg:         cfg,
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if err := applyIncident(s.VM, cfg.Incident); err != nil {
		return nil, err
	}
	for _, step := range []func() error{s.startHosts, s.writeFiles, s.handOver} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// withDefaults fills cfg's empty fields and checks the rest.
func withDefaults(cfg Config) (Config, error) {
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:8080"
	}
	if err := requireLoopback(cfg.Listen); err != nil {
		return cfg, err
	}
	switch cfg.PVE {
	case PVESimulated, PVEBlackholed, PVEDown:
	default:
		return cfg, fmt.Errorf("unknown Proxmox host %q: %q, %q or %q", cfg.PVE, PVESimulated, PVEBlackholed, PVEDown)
	}
	if cfg.BinDir == "" {
		exe, err := os.Executable()
		if err != nil {
			return cfg, fmt.Errorf("find binaries: %w", err)
		}
		cfg.BinDir = filepath.Dir(exe)
	}
	if cfg.ClaudeBin == "" {
		cfg.ClaudeBin = "claude"
	}
	if cfg.StopGrace == 0 {
		cfg.StopGrace = defaultStopGrace
	}
	if cfg.User == "" {
		cfg.User = "operator"
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	return cfg, nil
}

// writeFiles binds the edge (its port is part of the WebAuthn origin the
// keyholder checks, so it is bound before the keyholder starts) and writes
// the operators file.
func (s *Stack) writeFiles() error {
	var err error
	if s.ln, err = net.Listen("tcp", s.cfg.Listen); err != nil {
		return fmt.Errorf("edge listen: %w", err)
	}
	_, edgePort, _ := net.SplitHostPort(s.ln.Addr().String())
	s.Origin = "http://" + RPID + ":" + edgePort
	s.OperatorsFile = filepath.Join(s.Dir, "operators")
	ops := "# operators: <name> <credential id> <COSE key>, one passkey a line\n"
	for _, l := range s.cfg.Operators {
		ops += l + "\n"
	}
	if err := os.WriteFile(s.OperatorsFile, []byte(ops), 0o644); err != nil {
		return fmt.Errorf("operators file: %w", err)
	}
	return nil
}

// handOver gives the folder to Config.RunAs, so binaries running as that
// user own their keys and can make their sockets and sessions.
func (s *Stack) handOver() error {
	if s.cfg.RunAs == nil {
		return nil
	}
	uid, gid := int(s.cfg.RunAs.Uid), int(s.cfg.RunAs.Gid)
	return filepath.WalkDir(s.Dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(path, uid, gid)
	})
}

// devvmEnv is what both binaries need to reach the devvm.
func (s *Stack) devvmEnv() []string {
	devvmIP, devvmPort, _ := net.SplitHostPort(s.DevvmAddr)
	return []string{
		"BREAKGLASS_DEVVM_HOST=" + devvmIP,
		"BREAKGLASS_DEVVM_PORT=" + devvmPort,
		"BREAKGLASS_DEVVM_USER=" + DevvmUser,
		"BREAKGLASS_KNOWN_HOSTS=" + s.KnownHosts,
		"BREAKGLASS_SOCKET_DIR=" + s.SocketDir,
	}
}

// KeyholderEnv is the keyholder's whole environment: the stack's own
// entries, then Config.KeyholderEnv, then extra (a later entry wins).
func (s *Stack) KeyholderEnv(extra ...string) []string {
	presenceEnv := []string{"BREAKGLASS_PRESENCE=off"}
	if s.cfg.Presence != "off" {
		presenceEnv = []string{
			"BREAKGLASS_RP_ID=" + RPID,
			"BREAKGLASS_ORIGINS=" + strings.Join(append([]string{s.Origin}, s.cfg.Origins...), ","),
			"BREAKGLASS_OPERATORS_FILE=" + s.OperatorsFile,
			"BREAKGLASS_ENROLL=open",
		}
	}
	pveHostIP, pvePort, _ := net.SplitHostPort(s.PVEAddr)
	return slices.Concat([]string{
		"PATH=" + environPath(s.cfg.Environ),
		"BREAKGLASS_PVE_HOST=" + pveHostIP,
		"BREAKGLASS_PVE_PORT=" + pvePort,
		"BREAKGLASS_PVE_USER=root",
		"BREAKGLASS_PVE_KEY=" + s.PVEKey,
		"BREAKGLASS_DEVVM_KEY=" + s.DevvmKey,
		"BREAKGLASS_VMID=" + strconv.Itoa(verbs.DefaultVMID),
		"BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS=30",
	}, presenceEnv, s.devvmEnv(), s.cfg.KeyholderEnv, extra)
}

// StartKeyholder starts a keyholder with KeyholderEnv(extra...) and waits
// for its socket (and, with presence required, its enrollment code).
func (s *Stack) StartKeyholder(ctx context.Context, extra ...string) (*Process, error) {
	env := s.KeyholderEnv(extra...)
	codeSeen := make(chan string, 1)
	watch := func(l logLine) bool {
		if !strings.HasPrefix(l.Message, "enrollment open") {
			return false
		}
		codeSeen <- l.Code
		return true
	}
	p, err := s.start(ctx, "keyholder", env, watch, func() error {
		return dialUnix(filepath.Join(s.SocketDir, "keyholder.sock"))
	})
	if err != nil {
		return nil, err
	}
	s.keyholder = p
	if lookup(env, "BREAKGLASS_ENROLL") == "open" {
		// The keyholder logs its code before it serves; its output is
		// copied through a pipe, so the line may trail the socket a little.
		select {
		case s.EnrollCode = <-codeSeen:
		case <-p.done:
			return nil, fmt.Errorf("keyholder %w without an enrollment code", errExited)
		case <-ctx.Done():
			return nil, errors.New("the keyholder printed no enrollment code")
		}
	}
	return p, nil
}

// WebEnv is the web's whole environment: the stack's own entries, the
// pass-through part of Config.Environ, Config.APIBaseURL, Config.WebEnv,
// then extra (a later entry wins). It listens on free loopback ports.
func (s *Stack) WebEnv(extra ...string) []string {
	env := slices.Concat([]string{
		"BREAKGLASS_LISTEN=127.0.0.1:0",
		"BREAKGLASS_METRICS_LISTEN=127.0.0.1:0",
		"BREAKGLASS_SESSIONS_DIR=" + s.SessionsDir,
		"BREAKGLASS_CLAUDE_BIN=" + s.cfg.ClaudeBin,
		// The edge stand-in reaches the web on loopback; the web trusts no
		// proxy unless told, so the local stack names it.
		"BREAKGLASS_TRUSTED_PROXIES=127.0.0.1/32,::1/128",
	}, s.devvmEnv(), passThrough(s.cfg.Environ))
	if s.cfg.APIBaseURL != "" {
		env = append(env, "ANTHROPIC_BASE_URL="+s.cfg.APIBaseURL)
	}
	return slices.Concat(env, s.cfg.WebEnv, extra)
}

// StartWeb starts a web with WebEnv(extra...) and waits until it listens
// and answers /healthz.
func (s *Stack) StartWeb(ctx context.Context, extra ...string) (*Web, error) {
	addrs := make(chan [2]string, 1)
	watch := func(l logLine) bool {
		if l.Message != "web listening" {
			return false
		}
		addrs <- [2]string{l.Addr, l.MetricsAddr}
		return true
	}
	w := &Web{}
	p, err := s.start(ctx, "web", s.WebEnv(extra...), watch, func() error {
		if w.URL == "" {
			select {
			case a := <-addrs:
				w.URL, w.MetricsURL = "http://"+a[0], "http://"+a[1]+"/metrics"
			default:
				return errors.New("not listening yet")
			}
		}
		return httpOK(w.URL + "/healthz")
	})
	if err != nil {
		return nil, err
	}
	w.Process = p
	s.web, s.WebURL, s.MetricsURL = w, w.URL, w.MetricsURL
	return w, nil
}

// start runs one of the stack's binaries and waits for ready; a child
// that does not get ready is stopped.
func (s *Stack) start(ctx context.Context, name string, env []string, watch func(logLine) bool, ready func() error) (*Process, error) {
	out := s.cfg.Out
	if s.cfg.Readable {
		out = readableWriter{out: out}
	}
	p, err := startProcess(name, filepath.Join(s.cfg.BinDir, name), env, s.cfg, out, watch)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	if err := p.waitReady(ctx, ready); err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// Done is closed when a child process of Start exits on its own.
func (s *Stack) Done() <-chan struct{} {
	out := make(chan struct{})
	go func() {
		select {
		case <-s.keyholder.done:
		case <-s.web.done:
		}
		close(out)
	}()
	return out
}

// Close stops everything in reverse order and removes the folder with the
// keys. It is safe on a partly started stack, and reports a child that had
// to be killed.
func (s *Stack) Close() error {
	var errs []error
	if s.edge != nil {
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.StopGrace)
		errs = append(errs, s.edge.Shutdown(ctx))
		cancel()
	}
	if s.ln != nil {
		s.ln.Close()
	}
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for _, p := range slices.Backward(procs) {
		errs = append(errs, p.Stop())
	}
	errs = append(errs, s.closeHosts(), os.RemoveAll(s.Dir))
	return errors.Join(errs...)
}

// lookup is name's value in env (the last entry wins), or "".
func lookup(env []string, name string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == name {
			v = val
		}
	}
	return v
}

// environPath is Environ's PATH, or a plain system one.
func environPath(environ []string) string {
	if p := lookup(environ, "PATH"); p != "" {
		return p
	}
	return "/usr/local/bin:/usr/bin:/bin"
}

// passThrough keeps the variables the web or claude legitimately need from
// the caller's environment; the web filters again for claude.
func passThrough(environ []string) []string {
	var out []string
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case name == "PATH", name == "LANG", name == "TZ", name == "HOME",
			name == "HTTPS_PROXY", name == "NO_PROXY",
			strings.HasPrefix(name, "ANTHROPIC_"),
			name == "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", name == "DISABLE_TELEMETRY", name == "DISABLE_AUTOUPDATER",
			name == "BREAKGLASS_AGENT_MUTATING_VERBS", name == "BREAKGLASS_MODEL", name == "BREAKGLASS_AGENT_MODE":
			out = append(out, kv)
		}
	}
	return out
}

func requireLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen address %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("listen address %q: the local stack serves on loopback only", addr)
	}
	return nil
}

func dialUnix(path string) error {
	c, err := net.Dial("unix", path)
	if err != nil {
		return err
	}
	return c.Close()
}

func httpOK(u string) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	return nil
}
