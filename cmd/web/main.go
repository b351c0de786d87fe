package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"breakglass/agents"
	"breakglass/internal/agenthome"
	"breakglass/internal/api"
	"breakglass/internal/claude"
	"breakglass/internal/ipc"
	"breakglass/internal/power"
	"breakglass/internal/pvecmd"
	"breakglass/internal/sandbox"
	"breakglass/internal/session"
	"breakglass/internal/signin"
	"breakglass/internal/turntoken"
	"breakglass/ui"
)

func main() {
	os.Exit(start(os.Args, os.Environ(), os.Stdout, os.Stderr))
}

// start dispatches on the name the binary was invoked as and returns the
// exit status.
func start(args, environ []string, stdout, stderr io.Writer) int {
	getenv := envLookup(environ)
	switch filepath.Base(args[0]) {
	case "ssh":
		return agenthome.SSHMain(args, environ, stderr)
	case "pve":
		return pvecmd.Main(args[1:], getenv, stdout, stderr)
	case sandbox.ShellName:
		return sandbox.ShellMain(args, environ, stderr)
	}
	if len(args) > 1 && args[1] == sandbox.Subcommand {
		return sandbox.Main(args, environ, stderr)
	}
	cfg, err := configFromEnv(getenv)
	if err == nil {
		err = readSecrets(&cfg)
	}
	if err != nil {
		fmt.Fprintf(stderr, "breakglass web: bad configuration:\n%v\n", err)
		return 2
	}
	// WARNING: before any secret is in memory worth reading from another
	// process of this user (TestWebIsNotDumpable).
	if err := hideMemory(); err != nil {
		fmt.Fprintf(stderr, "breakglass web: %v\n", err)
		return 1
	}
	log := hclog.New(&hclog.LoggerOptions{Name: "web", JSONFormat: true, Output: stderr, Level: hclog.Info})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := run(ctx, cfg, environ, log); err != nil {
		log.Error("web stopped", "error", err)
		return 1
	}
	return 0
}

// envLookup returns a getenv over environ.
func envLookup(environ []string) func(string) string {
	m := make(map[string]string, len(environ))
	for _, kv := range environ {
		if k, v, ok := strings.Cut(kv, "="); ok {
			m[k] = v
		}
	}
	return func(k string) string { return m[k] }
}

// The agent's folder under the sessions folder (not a session id, so the
// manager skips it), and the `pve` socket in it.
const (
	agentDirName  = "agent"
	pveSocketName = "pve.sock"
)

// Server timeouts. The stream sets its own per-write deadlines, and the
// verb routes lift theirs for as long as a verb may take.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = 60 * time.Second
	writeTimeout      = 60 * time.Second
	idleTimeout       = 120 * time.Second
	shutdownTimeout   = 20 * time.Second
)

// run serves until ctx ends, then shuts down: turns end (each with its
// done), streams close, listeners drain.
func run(ctx context.Context, cfg config, environ []string, log hclog.Logger) error {
	logAuthMode(cfg, log)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sm, err := session.NewMetrics(reg)
	if err != nil {
		return err
	}
	agent, err := newAgent(cfg, environ, reg, log)
	if err != nil {
		return err
	}
	lns, err := listen(cfg, agent)
	if err != nil {
		return err
	}
	defer lns.close()

	kh := ipc.NewClient(filepath.Join(cfg.SocketDir, ipc.SocketName))
	defer kh.Close()
	if cfg.AgentMutatingVerbs == power.PolicyAllow {
		if err := refuseAllowWithPresence(ctx, kh, log); err != nil {
			return err
		}
	}
	nt, err := startNotifications(cfg, kh, reg, log)
	if err != nil {
		return err
	}
	defer nt.stop()

	// The turn tokens come first: the manager gives each turn one, the
	// verb service checks them; the service then writes into the manager.
	tokens := &turntoken.Set{}
	powerCfg := power.Config{
		Keyholder:  kh,
		Policy:     cfg.AgentMutatingVerbs,
		Logger:     log.Named("vm"),
		Registerer: reg,
		Tokens:     tokens,
		// The recovery ladder: screenshots kept in the session's folder,
		// and ssh to the devvm as the health ladder's last rung.
		SessionsDir: cfg.SessionsDir,
		SSH:         sshCheck(agent.paths.SSHConfig),
	}
	pveURL, pveWait := "unix://"+lns.pveSock, powerCfg.MaxWait()+time.Minute
	mgr, err := session.New(session.Config{
		Dir:                cfg.SessionsDir,
		Runner:             agent.runner,
		MaxConcurrentTurns: cfg.MaxConcurrentTurns,
		TurnTimeout:        cfg.TurnTimeout,
		IdleTimeout:        cfg.SessionIdle,
		RetainFor:          cfg.RetainFor,
		Mode:               cfg.AgentMode,
		PermissionTimeout:  cfg.PermissionTimeout,
		TurnEnv:            func(id string) ([]string, func()) { return tokens.TurnEnv(id, pveURL, pveWait) },
		Logger:             log.Named("session"),
		Metrics:            sm,
		Observer:           nt.observer(),
	})
	if err != nil {
		return err
	}
	powerCfg.Transcript = mgr
	verbsSvc, err := power.New(powerCfg)
	if err != nil {
		_ = mgr.Close()
		return err
	}
	signIn, err := signin.New(signin.Config{Keyholder: kh, Logger: log.Named("signin")})
	if err != nil {
		_ = mgr.Close()
		return err
	}
	srv, err := api.New(api.Config{
		SignIn:         signIn,
		Sessions:       mgr,
		Keyholder:      keyholderProbe{kh},
		BearerToken:    cfg.BearerToken,
		TrustedProxies: cfg.TrustedProxies,
		KeepAlive:      cfg.SSEKeepAlive,
		UI:             ui.FS(),
		Routes:         slices.Concat(verbsSvc.Routes(), signIn.Routes(), nt.routes()),
		Sandbox:        &agent.sandbox,
		Logger:         log.Named("api"),
		Registerer:     reg,
		Gatherer:       reg,
	})
	if err != nil {
		_ = mgr.Close()
		return err
	}

	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", srv.MetricsHandler())
	// The agent's `pve` reaches the web on its own socket, where nothing
	// but the agent's token-checked route answers.
	servers := []*http.Server{
		newHTTPServer(srv.Handler(), 64<<10, log),
		newHTTPServer(metricsMux, 16<<10, log),
		newHTTPServer(api.OpenHandler(verbsSvc.AgentRoutes()), 16<<10, log),
	}
	nt.run(ctx)
	log.Info("web listening", "addr", lns.web.Addr().String(), "metrics_addr", lns.metrics.Addr().String(), "pve_socket", lns.pveSock,
		"sessions", len(mgr.List()), "policy", string(verbsSvc.Policy()))
	return serve(ctx, log, mgr, servers, []net.Listener{lns.web, lns.metrics, lns.pve})
}

// logAuthMode says at start how operators can get in.
func logAuthMode(cfg config, log hclog.Logger) {
	if len(cfg.TrustedProxies) == 0 {
		log.Info("BREAKGLASS_TRUSTED_PROXIES is empty: the identity header is refused from every peer; sign in with the bearer token or a passkey, or set it to the SSO proxy's addresses", "header", api.IdentityHeader)
	} else {
		log.Info("the identity header is trusted from BREAKGLASS_TRUSTED_PROXIES only; the proxy there must overwrite it from its forward-auth answer", "header", api.IdentityHeader, "trusted_proxies", fmt.Sprint(cfg.TrustedProxies))
	}
	switch {
	case cfg.BearerToken == "":
		log.Info("API_BEARER_TOKEN_FILE and API_BEARER_TOKEN are empty: bearer authentication is off")
	case cfg.BearerTokenFile == "":
		log.Warn("the bearer token comes from API_BEARER_TOKEN; prefer API_BEARER_TOKEN_FILE, which keeps it out of the environment")
	}
}

// agent is the agent's side of the web: its folder, its sandbox and the
// claude runner of its turns.
type agent struct {
	paths   agenthome.Paths
	policy  sandbox.Policy
	sandbox sandbox.Status
	runner  *claude.Runner
}

// newAgent probes the sandbox, prepares the agent's folder and its policy,
// and builds the claude runner.
func newAgent(cfg config, environ []string, reg prometheus.Registerer, log hclog.Logger) (agent, error) {
	var a agent
	a.sandbox = sandbox.Probe(cfg.SandboxMaxABI)
	if err := reportSandbox(a.sandbox, reg, log); err != nil {
		return a, err
	}
	var err error
	a.paths, err = agenthome.Prepare(agenthome.Config{
		Dir:        filepath.Join(cfg.SessionsDir, agentDirName),
		SocketDir:  cfg.SocketDir,
		DevVMHost:  cfg.DevVMHost,
		DevVMPort:  cfg.DevVMPort,
		DevVMUser:  cfg.DevVMUser,
		KnownHosts: cfg.KnownHosts,
	})
	if err != nil {
		return a, fmt.Errorf("prepare the agent's folder: %w", err)
	}
	var exe string
	a.policy, exe, err = agentPolicy(cfg, environ, a.paths, log)
	if err != nil {
		return a, err
	}
	if err := checkSecrets(a.policy, cfg.SessionsDir, cfg.SecretFiles); err != nil {
		return a, err
	}
	a.runner, err = claude.New(claude.Config{
		Binary:          cfg.ClaudeBin,
		Agent:           cfg.Agent,
		Model:           cfg.Model,
		BinDir:          a.paths.BinDir,
		AgentDefinition: agents.Breakglass,
		Sandbox: &claude.Sandbox{
			Launcher: exe,
			Shell:    a.paths.Shell,
			Policy:   a.policy,
			Env:      []string{agenthome.ConfigVar + "=" + a.paths.SSHConfig},
		},
		MaxBudgetUSD: cfg.MaxBudgetUSD,
		Environ:      environ,
		Logger:       log,
		Registerer:   reg,
		RetryCutoff:  cfg.APIRetryCutoff,
		// Above every wait of a Bash command for the operator: an
		// approval of a verb or a permission question.
		BashTimeout: max(claude.DefaultBashTimeout, cfg.PermissionTimeout+time.Minute),
	})
	if err != nil {
		return a, fmt.Errorf("claude runner: %w", err)
	}
	return a, nil
}

// listeners are the web's: the operator's, the metrics', and the agent's
// `pve` socket.
type listeners struct {
	web, metrics, pve net.Listener
	pveSock           string
}

func (l *listeners) close() {
	for _, ln := range []net.Listener{l.web, l.metrics, l.pve} {
		if ln != nil {
			ln.Close()
		}
	}
}

// listen opens the listeners. The agent's `pve` reaches the web through
// its socket only, with its turn's token: no TCP path from the agent to the
// web is needed.
func listen(cfg config, a agent) (*listeners, error) {
	l := &listeners{}
	if err := l.open(cfg, a); err != nil {
		l.close()
		return nil, err
	}
	return l, nil
}

func (l *listeners) open(cfg config, a agent) error {
	var err error
	if l.web, err = net.Listen("tcp", cfg.Listen); err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	if l.metrics, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
		return fmt.Errorf("listen %s: %w", cfg.MetricsListen, err)
	}
	if err := checkListeners(a.policy, l.web, l.metrics); err != nil {
		return err
	}
	l.pveSock = filepath.Join(a.paths.Dir, pveSocketName)
	_ = os.Remove(l.pveSock)
	if l.pve, err = net.Listen("unix", l.pveSock); err != nil {
		return fmt.Errorf("listen %s: %w", l.pveSock, err)
	}
	if err := os.Chmod(l.pveSock, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", l.pveSock, err)
	}
	return nil
}

// newHTTPServer is a listener's server with the web's timeouts.
func newHTTPServer(h http.Handler, maxHeader int, log hclog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeader,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
}

// serve runs each server on its listener until ctx ends or one fails, then
// shuts down: turns end first (each writes its error and done, streams then
// close), so the listeners can drain.
func serve(ctx context.Context, log hclog.Logger, mgr *session.Manager, servers []*http.Server, lns []net.Listener) error {
	errc := make(chan error, len(servers))
	var wg sync.WaitGroup
	for i, srv := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Serve(lns[i]); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("a listener failed", "error", runErr)
	}
	if err := mgr.Close(); err != nil {
		log.Error("close sessions", "error", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, srv := range servers {
		if err := srv.Shutdown(sctx); err != nil {
			_ = srv.Close()
		}
	}
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// The parts wired together above must fit.
var (
	_ session.Runner   = (*claude.Runner)(nil)
	_ power.Transcript = (*session.Manager)(nil)
	_ power.Keyholder  = (*ipc.Client)(nil)
	_ api.Keyholder    = keyholderProbe{}
	_ signin.Keyholder = (*ipc.Client)(nil)
	_ power.Presencer  = (*ipc.Client)(nil)
)

// keyholderProbe adapts the ipc client to api.Keyholder.
type keyholderProbe struct{ c *ipc.Client }

func (k keyholderProbe) Healthz(ctx context.Context) error { return k.c.Healthz(ctx) }

// Presence reports the keyholder's presence mode (for /readyz).
func (k keyholderProbe) Presence(ctx context.Context) (string, error) {
	vl, err := k.c.Verbs(ctx)
	if err != nil {
		return "", err
	}
	if vl.Presence == "" {
		return "unknown", nil
	}
	return vl.Presence, nil
}

// allowWait bounds how long the web waits at start for the keyholder to say
// whether it requires presence, when the agent's verbs are to run unasked.
const allowWait = 15 * time.Second

// refuseAllowWithPresence refuses BREAKGLASS_AGENT_MUTATING_VERBS=allow when
// the keyholder requires operator presence: the agent has no passkey, so
// "allow" could only ever fail, and it must never look like a way around
// the operator. A keyholder that cannot be asked counts as requiring it.
func refuseAllowWithPresence(ctx context.Context, kh *ipc.Client, log hclog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, allowWait)
	defer cancel()
	for {
		vl, err := kh.Verbs(ctx)
		if err == nil {
			if vl.Presence == "off" {
				log.Warn("BREAKGLASS_AGENT_MUTATING_VERBS=allow: the agent's mutating verbs run unasked (the keyholder's presence is off)")
				return nil
			}
			return errors.New("BREAKGLASS_AGENT_MUTATING_VERBS=allow is refused: the keyholder requires operator presence, which the agent cannot give; use approve")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("BREAKGLASS_AGENT_MUTATING_VERBS=allow is refused: the keyholder did not say within %v whether it requires operator presence: %w", allowWait, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func (k keyholderProbe) Metrics(ctx context.Context) ([]byte, error) {
	b, _, err := k.c.Metrics(ctx)
	return b, err
}
