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
	// PVEBlackholed accepts TCP and never answers.
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
}

// The Proxmox hosts Config.PVE names.
const (
	PVESimulated  = ""
	PVEBlackholed = "blackholed"
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

// Stack is a running local stack.
type Stack struct {
	// URL is where the browser goes (the edge).
	URL string
	// Dir is the temporary folder with keys, sockets and sessions; it is
	// removed by Close.
	Dir string
	// VM is the simulated VM 102 behind the simulated Proxmox host.
	VM *pvesim.VM
	// MetricsURL is the web's metrics listener.
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

	log       hclog.Logger
	pve       *pvesim.Server
	blackhole *blackhole
	devvm     *devvmsim.Server
	keyholder *process
	web       *process
	edge      *http.Server
	edgeDone  chan error

	// Set while starting.
	cfg                  Config
	pveAddr, devvmAddr   string
	pveKey, devvmKey     key
	knownHosts, sockDir  string
	ln                   net.Listener
	webAddr, metricsAddr string
}

// Start brings the stack up and returns once the edge serves the UI. On
// error, everything started so far is stopped and the folder removed.
func Start(ctx context.Context, cfg Config) (_ *Stack, err error) {
	cfg, err = withDefaults(cfg)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "breakglass-devstack-")
	if err != nil {
		return nil, fmt.Errorf("temp folder: %w", err)
	}
	s := &Stack{Dir: dir, log: cfg.Logger, VM: pvesim.NewVM(verbs.DefaultVMID), cfg: cfg}
	if err := applyIncident(s.VM, cfg.Incident); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	for _, step := range []func() error{s.startHosts, s.writeFiles} {
		if err := step(); err != nil {
			return nil, err
		}
	}
	readyCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := s.startKeyholder(readyCtx); err != nil {
		return nil, err
	}
	if err := s.startWeb(readyCtx); err != nil {
		return nil, err
	}
	s.URL = s.Origin + "/"
	s.edge = edgeServer(edge(&url.URL{Scheme: "http", Host: s.webAddr}, cfg.User))
	s.edgeDone = make(chan error, 1)
	ln := s.ln
	s.ln = nil
	go func() { s.edgeDone <- s.edge.Serve(ln) }()
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
	case PVESimulated, PVEBlackholed:
	default:
		return cfg, fmt.Errorf("unknown Proxmox host %q: %q or %q", cfg.PVE, PVESimulated, PVEBlackholed)
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

// startHosts generates the keys and starts the Proxmox host (simulated or
// blackholed) and the devvm (simulated, or a closed port).
func (s *Stack) startHosts() error {
	keysDir := filepath.Join(s.Dir, "keys")
	if err := os.Mkdir(keysDir, 0o700); err != nil {
		return fmt.Errorf("keys folder: %w", err)
	}
	var err error
	if s.pveKey, err = newKey(keysDir, "pve"); err != nil {
		return err
	}
	if s.devvmKey, err = newKey(keysDir, "devvm"); err != nil {
		return err
	}
	pveHost, err := newKey("", "")
	if err != nil {
		return err
	}
	devvmHost, err := newKey("", "")
	if err != nil {
		return err
	}
	if s.cfg.PVE == PVEBlackholed {
		if s.blackhole, err = startBlackhole(); err != nil {
			return err
		}
		s.pveAddr = s.blackhole.addr
	} else {
		s.pve, err = pvesim.Start(pvesim.Config{
			VM:            s.VM,
			AuthorizedKey: s.pveKey.signer.PublicKey(),
			HostKey:       pveHost.signer,
			Logger:        s.cfg.Logger.Named("pve"),
			// The local stack shows every rung, guest-exec included.
			AllowGuestExec: true,
		})
		if err != nil {
			return fmt.Errorf("simulated Proxmox host: %w", err)
		}
		s.pveAddr = s.pve.Addr
	}
	if s.cfg.DevvmDown {
		if s.devvmAddr, err = freeLoopbackAddr(); err != nil {
			return err
		}
	} else {
		s.devvm, err = devvmsim.Start(devvmsim.Config{
			User:          DevvmUser,
			AuthorizedKey: s.devvmKey.signer.PublicKey(),
			HostKey:       devvmHost.signer,
			// ssh fails whenever the simulated VM's sshd would not answer.
			Reachable: s.VM.SSHUp,
		})
		if err != nil {
			return fmt.Errorf("simulated devvm: %w", err)
		}
		s.devvmAddr = s.devvm.Addr
	}
	s.knownHosts = filepath.Join(s.Dir, "known_hosts")
	pins := knownHostsLine(s.pveAddr, pveHost.signer.PublicKey()) + knownHostsLine(s.devvmAddr, devvmHost.signer.PublicKey())
	if err := os.WriteFile(s.knownHosts, []byte(pins), 0o644); err != nil {
		return fmt.Errorf("known_hosts: %w", err)
	}
	return nil
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
	s.sockDir = filepath.Join(s.Dir, "run")
	return nil
}

// devvmEnv is what both binaries need to reach the devvm.
func (s *Stack) devvmEnv() []string {
	devvmIP, devvmPort, _ := net.SplitHostPort(s.devvmAddr)
	return []string{
		"BREAKGLASS_DEVVM_HOST=" + devvmIP,
		"BREAKGLASS_DEVVM_PORT=" + devvmPort,
		"BREAKGLASS_DEVVM_USER=" + DevvmUser,
		"BREAKGLASS_KNOWN_HOSTS=" + s.knownHosts,
		"BREAKGLASS_SOCKET_DIR=" + s.sockDir,
	}
}

// startKeyholder starts the keyholder and waits for its socket (and, with
// presence required, its enrollment code).
func (s *Stack) startKeyholder(ctx context.Context) error {
	presenceEnv := []string{"BREAKGLASS_PRESENCE=off"}
	if s.cfg.Presence != "off" {
		presenceEnv = []string{
			"BREAKGLASS_RP_ID=" + RPID,
			"BREAKGLASS_ORIGINS=" + strings.Join(append([]string{s.Origin}, s.cfg.Origins...), ","),
			"BREAKGLASS_OPERATORS_FILE=" + s.OperatorsFile,
			"BREAKGLASS_ENROLL=open",
		}
	}
	pveHostIP, pvePort, _ := net.SplitHostPort(s.pveAddr)
	env := slices.Concat([]string{
		"BREAKGLASS_PVE_HOST=" + pveHostIP,
		"BREAKGLASS_PVE_PORT=" + pvePort,
		"BREAKGLASS_PVE_USER=root",
		"BREAKGLASS_PVE_KEY=" + s.pveKey.path,
		"BREAKGLASS_DEVVM_KEY=" + s.devvmKey.path,
		"BREAKGLASS_VMID=" + strconv.Itoa(verbs.DefaultVMID),
		"BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS=30",
	}, presenceEnv, s.devvmEnv(), s.cfg.KeyholderEnv)
	codeSeen := make(chan string, 1)
	var err error
	s.keyholder, err = startProcess("keyholder", filepath.Join(s.cfg.BinDir, "keyholder"), env,
		codeWatcher{out: s.out(), code: codeSeen})
	if err != nil {
		return err
	}
	sock := filepath.Join(s.sockDir, "keyholder.sock")
	if err := s.keyholder.waitReady(ctx, func() error { return dialUnix(sock) }); err != nil {
		return err
	}
	if s.cfg.Presence != "off" {
		// The keyholder logs its code before it serves; its output is
		// copied through a pipe, so the line may trail the socket a little.
		select {
		case s.EnrollCode = <-codeSeen:
		case <-ctx.Done():
			return errors.New("the keyholder printed no enrollment code")
		}
	}
	return nil
}

// startWeb starts the web on free loopback ports and waits for /healthz.
func (s *Stack) startWeb(ctx context.Context) error {
	var err error
	if s.webAddr, err = freeLoopbackAddr(); err != nil {
		return err
	}
	if s.metricsAddr, err = freeLoopbackAddr(); err != nil {
		return err
	}
	s.MetricsURL = "http://" + s.metricsAddr + "/metrics"
	s.WebURL = "http://" + s.webAddr
	env := slices.Concat([]string{
		"BREAKGLASS_LISTEN=" + s.webAddr,
		"BREAKGLASS_METRICS_LISTEN=" + s.metricsAddr,
		"BREAKGLASS_SESSIONS_DIR=" + filepath.Join(s.Dir, "sessions"),
		"BREAKGLASS_CLAUDE_BIN=" + s.cfg.ClaudeBin,
		// The edge stand-in reaches the web on loopback; the web trusts no
		// proxy unless told, so the local stack names it.
		"BREAKGLASS_TRUSTED_PROXIES=127.0.0.1/32,::1/128",
	}, s.devvmEnv(), passThrough(s.cfg.Environ))
	if s.cfg.APIBaseURL != "" {
		env = append(env, "ANTHROPIC_BASE_URL="+s.cfg.APIBaseURL)
	}
	env = append(env, s.cfg.WebEnv...)
	if s.web, err = startProcess("web", filepath.Join(s.cfg.BinDir, "web"), env, s.out()); err != nil {
		return err
	}
	return s.web.waitReady(ctx, func() error { return httpOK("http://" + s.webAddr + "/healthz") })
}

// out is where a child's output goes: as it is, or one readable line per
// event (Config.Readable).
func (s *Stack) out() io.Writer {
	if s.cfg.Readable {
		return readableWriter{out: s.cfg.Out}
	}
	return s.cfg.Out
}

// Done is closed when a child process of the stack exits on its own.
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
// keys. It is safe on a partly started stack.
func (s *Stack) Close() error {
	var errs []error
	if s.edge != nil {
		ctx, cancel := context.WithTimeout(context.Background(), stopGrace)
		errs = append(errs, s.edge.Shutdown(ctx))
		cancel()
	}
	if s.ln != nil {
		s.ln.Close()
	}
	for _, p := range []*process{s.web, s.keyholder} {
		if p != nil {
			p.stop()
		}
	}
	if s.blackhole != nil {
		s.blackhole.Close()
	}
	if s.devvm != nil {
		errs = append(errs, s.devvm.Close())
	}
	if s.pve != nil {
		errs = append(errs, s.pve.Close())
	}
	errs = append(errs, os.RemoveAll(s.Dir))
	return errors.Join(errs...)
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

func freeLoopbackAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
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
