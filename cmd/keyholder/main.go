package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/sshagent"
)

// config is everything the keyholder reads from its environment.
type config struct {
	// socketDir holds keyholder.sock (and agent.sock).
	socketDir string
	// keyholder is the verb path's configuration, without logger and
	// metrics, which run supplies.
	keyholder keyholder.Config
	// logOutput receives the JSON log lines; main passes stderr.
	logOutput io.Writer
}

func main() {
	cfg, err := configFromEnv(os.LookupEnv)
	if err == nil {
		cfg.logOutput = os.Stderr
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
		err = run(ctx, cfg)
		stop()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "keyholder: %v\n", err)
		os.Exit(1)
	}
}

// env names and the README's defaults (Configuration).
const (
	envSocketDir   = "BREAKGLASS_SOCKET_DIR"
	envPVEHost     = "BREAKGLASS_PVE_HOST"
	envPVEPort     = "BREAKGLASS_PVE_PORT"
	envPVEUser     = "BREAKGLASS_PVE_USER"
	envPVEKey      = "BREAKGLASS_PVE_KEY"
	envDevVMHost   = "BREAKGLASS_DEVVM_HOST"
	envDevVMPort   = "BREAKGLASS_DEVVM_PORT"
	envDevVMUser   = "BREAKGLASS_DEVVM_USER"
	envDevVMKey    = "BREAKGLASS_DEVVM_KEY"
	envKnownHosts  = "BREAKGLASS_KNOWN_HOSTS"
	envVMID        = "BREAKGLASS_VMID"
	envVerbTimeout = "BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS"
	envPresence    = "BREAKGLASS_PRESENCE"
	envOperators   = "BREAKGLASS_OPERATORS_FILE"
	envRPID        = "BREAKGLASS_RP_ID"
	envOrigins     = "BREAKGLASS_ORIGINS"
	envEnroll      = "BREAKGLASS_ENROLL"
)

// configFromEnv reads the environment through lookup (os.LookupEnv in main).
// An unset or empty variable takes its default; a malformed one is an error
// naming it.
func configFromEnv(lookup func(string) (string, bool)) (config, error) {
	get := func(name, def string) string {
		if v, ok := lookup(name); ok && v != "" {
			return v
		}
		return def
	}
	var errs []error
	num := func(name string, def, lo, hi int) int {
		s := get(name, strconv.Itoa(def))
		n, err := strconv.Atoi(s)
		if err != nil || n < lo || n > hi {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, s, lo, hi))
			return def
		}
		return n
	}
	cfg := config{
		socketDir: get(envSocketDir, "/run/breakglass"),
		keyholder: keyholder.Config{
			PVE: keyholder.Host{
				Host: get(envPVEHost, "192.168.1.127"),
				Port: num(envPVEPort, 22, 1, 65535),
				User: get(envPVEUser, "root"),
			},
			PVEKeyPath: get(envPVEKey, "/etc/breakglass/keys/pve"),
			DevVM: keyholder.Host{
				Host: get(envDevVMHost, "10.0.10.10"),
				Port: num(envDevVMPort, 22, 1, 65535),
				User: get(envDevVMUser, "breakglass"),
			},
			DevVMKeyPath:   get(envDevVMKey, "/etc/breakglass/keys/devvm"),
			KnownHostsPath: get(envKnownHosts, "/etc/breakglass/known_hosts"),
			VMID:           num(envVMID, 102, 100, 999999999),
			VerbTimeout:    time.Duration(num(envVerbTimeout, 120, 1, 3600)) * time.Second,
		},
	}
	switch mode := get(envPresence, string(presence.ModeRequired)); mode {
	case string(presence.ModeRequired):
		kc := &cfg.keyholder
		kc.Presence = presence.ModeRequired
		kc.OperatorsPath = get(envOperators, "/etc/breakglass/operators")
		kc.RPID = get(envRPID, "")
		if kc.RPID == "" {
			errs = append(errs, fmt.Errorf("%s is empty: operator presence needs the site's host name (or set %s=off explicitly)", envRPID, envPresence))
		}
		for _, o := range strings.Split(get(envOrigins, "https://"+kc.RPID), ",") {
			if o = strings.TrimSpace(o); o != "" {
				kc.Origins = append(kc.Origins, o)
			}
		}
		switch e := get(envEnroll, "closed"); e {
		case "closed":
		case "open":
			kc.Enroll = true
		default:
			errs = append(errs, fmt.Errorf("%s=%q: want closed or open", envEnroll, e))
		}
	case string(presence.ModeOff):
		cfg.keyholder.Presence = presence.ModeOff
	default:
		errs = append(errs, fmt.Errorf("%s=%q: want required or off", envPresence, mode))
	}
	if !filepath.IsAbs(cfg.socketDir) {
		errs = append(errs, fmt.Errorf("%s=%q: want an absolute path", envSocketDir, cfg.socketDir))
	}
	return cfg, errors.Join(errs...)
}

// run checks the configuration, then serves until ctx ends (SIGTERM) and
// removes its socket. Every start-up refusal is returned, naming the file.
func run(ctx context.Context, cfg config) error {
	out := cfg.logOutput
	if out == nil {
		out = io.Discard
	}
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "keyholder",
		JSONFormat: true,
		Output:     out,
		Level:      hclog.Info,
	})
	// One private registry for the whole process; the web re-exports it,
	// so no Go runtime or process collectors that would clash with its own.
	reg := prometheus.NewRegistry()

	kc := cfg.keyholder
	kc.Logger = logger.Named("verbs")
	kc.Registerer, kc.Gatherer = reg, reg
	kh, err := keyholder.New(kc)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	defer kh.Close()

	sock := filepath.Join(cfg.socketDir, ipc.SocketName)
	l, err := ipc.Listen(sock)
	if err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}

	// The restricted ssh-agent: the devvm key only, signing only logins
	// bound to the devvm's pinned host key as the configured user.
	devvmPins, err := sshagent.LoadHostKeys(cfg.keyholder.KnownHostsPath, cfg.keyholder.DevVM.Addr())
	if err != nil {
		l.Close()
		return fmt.Errorf("refusing to start: %w", err)
	}
	agent, err := sshagent.New(sshagent.Config{
		Key:            kh.DevVMSigner(),
		DevvmHostKeys:  devvmPins,
		User:           cfg.keyholder.DevVM.User,
		MaxConnections: sshagent.DefaultMaxConnections,
		Logger:         logger.Named("agent"),
		Registerer:     reg,
	})
	if err != nil {
		l.Close()
		return fmt.Errorf("refusing to start: %w", err)
	}
	agentSock := filepath.Join(cfg.socketDir, ipc.AgentSocketName)
	al, err := ipc.Listen(agentSock)
	if err != nil {
		l.Close()
		return fmt.Errorf("refusing to start: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Each service runs in its own goroutine until ctx ends; the first to
	// fail stops the others.
	services := []func(context.Context) error{
		func(ctx context.Context) error {
			return ipc.Serve(ctx, l, ipc.ServerConfig{
				Handler: kh.Handler(), Logger: logger.Named("http"),
				MaxConnections: ipc.DefaultMaxConnections, OnRefused: kh.ConnectionRefused,
			})
		},
		func(ctx context.Context) error { return agent.Serve(ctx, al) },
	}
	logger.Info("serving", "socket", sock, "agent", agentSock, "pve", cfg.keyholder.PVE.Addr(), "vmid", kh.VMID(), "presence", string(kh.PresenceMode()))

	errc := make(chan error, len(services))
	for _, s := range services {
		go func() { errc <- s(ctx) }()
	}
	var first error
	for range services {
		if err := <-errc; err != nil && first == nil {
			first = err
			cancel()
		}
	}
	if first != nil {
		return first
	}
	logger.Info("stopped", "socket", sock)
	return nil
}
