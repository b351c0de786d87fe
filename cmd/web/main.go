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
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/mux"
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

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	sm, err := session.NewMetrics(reg)
	if err != nil {
		return err
	}

	sandboxStatus := sandbox.Probe(cfg.SandboxMaxABI)
	if err := reportSandbox(sandboxStatus, reg, log); err != nil {
		return err
	}
	paths, err := agenthome.Prepare(agenthome.Config{
		Dir:        filepath.Join(cfg.SessionsDir, agentDirName),
		SocketDir:  cfg.SocketDir,
		DevVMHost:  cfg.DevVMHost,
		DevVMPort:  cfg.DevVMPort,
		DevVMUser:  cfg.DevVMUser,
		KnownHosts: cfg.KnownHosts,
	})
	if err != nil {
		return fmt.Errorf("prepare the agent's folder: %w", err)
	}
	agentBase, exe, err := agentPolicy(cfg, environ, paths, log)
	if err != nil {
		return err
	}
	if err := checkSecrets(agentBase, cfg.SessionsDir, cfg.SecretFiles); err != nil {
		return err
	}
	runner, err := claude.New(claude.Config{
		Binary:          cfg.ClaudeBin,
		Agent:           cfg.Agent,
		Model:           cfg.Model,
		BinDir:          paths.BinDir,
		AgentDefinition: agents.Breakglass,
		Sandbox: &claude.Sandbox{
			Launcher: exe,
			Shell:    paths.Shell,
			Policy:   agentBase,
			Env:      []string{agenthome.ConfigVar + "=" + paths.SSHConfig},
		},
		MaxBudgetUSD: cfg.MaxBudgetUSD,
		Environ:      environ,
		Logger:       log,
		Registerer:   reg,
		RetryCutoff:  cfg.APIRetryCutoff,
	})
	if err != nil {
		return fmt.Errorf("claude runner: %w", err)
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.Listen, err)
	}
	defer ln.Close()
	mln, err := net.Listen("tcp", cfg.MetricsListen)
	if err != nil {
		return fmt.Errorf("listen %s: %w", cfg.MetricsListen, err)
	}
	defer mln.Close()
	if err := checkListeners(agentBase, ln, mln); err != nil {
		return err
	}
	// The agent's `pve` reaches the web through this socket only, with its
	// turn's token: no TCP path from the agent to the web is needed.
	pveSock := filepath.Join(paths.Dir, pveSocketName)
	_ = os.Remove(pveSock)
	pln, err := net.Listen("unix", pveSock)
	if err != nil {
		return fmt.Errorf("listen %s: %w", pveSock, err)
	}
	defer pln.Close()
	if err := os.Chmod(pveSock, 0o600); err != nil {
		return fmt.Errorf("chmod %s: %w", pveSock, err)
	}

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

	// The manager and the verb service need each other: the service writes
	// verb events into sessions, and each turn gets the service's token.
	var verbsSvc *power.Service
	pveURL := "unix://" + pveSock
	mgr, err := session.New(session.Config{
		Dir:                cfg.SessionsDir,
		Runner:             runner,
		MaxConcurrentTurns: cfg.MaxConcurrentTurns,
		TurnTimeout:        cfg.TurnTimeout,
		IdleTimeout:        cfg.SessionIdle,
		RetainFor:          cfg.RetainFor,
		TurnEnv:            func(id string) ([]string, func()) { return verbsSvc.TurnEnv(id, pveURL) },
		Logger:             log.Named("session"),
		Metrics:            sm,
		Observer:           nt.observer(),
	})
	if err != nil {
		return err
	}
	verbsSvc, err = power.New(power.Config{
		Keyholder:  kh,
		Transcript: mgr,
		Policy:     cfg.AgentMutatingVerbs,
		Logger:     log.Named("vm"),
		Registerer: reg,
		// The recovery ladder: screenshots kept in the session's folder,
		// and ssh to the devvm as the health ladder's last rung.
		SessionsDir: cfg.SessionsDir,
		SSH:         sshCheck(paths.SSHConfig),
	})
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
		Routes: func(operator, open *mux.Router, identity func(*http.Request) string) {
			verbsSvc.RegisterOperator(operator, identity)
			signIn.Register(open)
			nt.register(operator)
		},
		Sandbox:    &sandboxStatus,
		Logger:     log.Named("api"),
		Registerer: reg,
		Gatherer:   reg,
	})
	if err != nil {
		_ = mgr.Close()
		return err
	}

	web := &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}
	metricsMux := http.NewServeMux()
	metricsMux.Handle("GET /metrics", srv.MetricsHandler())
	metrics := &http.Server{
		Handler:           metricsMux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}

	nt.run(ctx)
	pveMux := mux.NewRouter()
	verbsSvc.RegisterAgent(pveMux)
	pveSrv := &http.Server{
		Handler:           pveMux,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          log.StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true}),
	}

	errc := make(chan error, 3)
	var wg sync.WaitGroup
	for _, s := range []struct {
		srv *http.Server
		ln  net.Listener
	}{{web, ln}, {metrics, mln}, {pveSrv, pln}} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- err
			}
		}()
	}
	log.Info("web listening", "addr", ln.Addr().String(), "metrics_addr", mln.Addr().String(), "pve_socket", pveSock,
		"sessions", len(mgr.List()), "policy", string(verbsSvc.Policy()))

	var runErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case runErr = <-errc:
		log.Error("a listener failed", "error", runErr)
	}
	// Turns end first (each writes its error and done, streams then
	// close), so the listeners can drain.
	if err := mgr.Close(); err != nil {
		log.Error("close sessions", "error", err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	for _, s := range []*http.Server{web, metrics, pveSrv} {
		if err := s.Shutdown(sctx); err != nil {
			_ = s.Close()
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
