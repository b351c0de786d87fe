package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"

	"breakglass/internal/agenthome"
	"breakglass/internal/sandbox"
	"breakglass/internal/uuid"
)

// errConfinement: the web would start with a secret or a port of its own
// within the agent's reach.
var errConfinement = errors.New("the agent's sandbox would reach the web")

// hideMemory makes the web's process undumpable: another process of the
// same user (the agent) can then neither ptrace it nor read its
// /proc/<pid>/environ or mem, whatever Landlock the kernel has.
func hideMemory() error {
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		return fmt.Errorf("prctl(PR_SET_DUMPABLE, 0): %w", err)
	}
	return nil
}

// agentPolicy is the base policy of every turn: what the agent may reach
// besides its session's own folders.
// exe is the web binary (symbolic links resolved): the launcher.
func agentPolicy(cfg config, environ []string, paths agenthome.Paths, log hclog.Logger) (p sandbox.Policy, exe string, err error) {
	exe, err = os.Executable()
	if err == nil {
		exe, err = filepath.EvalSymlinks(exe)
	}
	if err != nil {
		return sandbox.Policy{}, "", fmt.Errorf("find own executable: %w", err)
	}
	a := sandbox.Agent{Executable: exe, Dir: paths.Dir, MaxABI: cfg.SandboxMaxABI}
	if bin, err := lookClaude(cfg.ClaudeBin, envLookup(environ)("PATH")); err != nil {
		log.Warn("claude CLI not found: turns will fail until it is installed", "error", err)
	} else if a.Claude, err = sandbox.InstallDir(bin); err != nil {
		log.Warn("claude CLI not found: turns will fail until it is installed", "error", err)
	}
	ports, err := agentPorts(environ, cfg.DevVMPort)
	if err != nil {
		return sandbox.Policy{}, "", err
	}
	a.Ports = ports
	return a.Policy(), exe, nil
}

// lookClaude finds the CLI as the runner does: a path, or a name on PATH.
func lookClaude(bin, path string) (string, error) {
	if strings.ContainsRune(bin, '/') {
		return bin, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" || !filepath.IsAbs(dir) {
			continue
		}
		p := filepath.Join(dir, bin)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%q: %w", bin, exec.ErrNotFound)
}

// agentPorts are the TCP ports the agent needs: the API's (from
// ANTHROPIC_BASE_URL, default 443), the proxy's (HTTPS_PROXY) and the
// devvm's SSH port.
func agentPorts(environ []string, devvmPort int) ([]uint16, error) {
	getenv := envLookup(environ)
	ports := []uint16{uint16(devvmPort)}
	for _, v := range []struct{ name, def string }{
		{"ANTHROPIC_BASE_URL", "https://api.anthropic.com"},
		{"HTTPS_PROXY", ""},
	} {
		raw := getenv(v.name)
		if raw == "" {
			raw = v.def
		}
		if raw == "" {
			continue
		}
		port, err := urlPort(raw)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
		if !slices.Contains(ports, port) {
			ports = append(ports, port)
		}
	}
	return ports, nil
}

// urlPort is a URL's port, or its scheme's.
func urlPort(raw string) (uint16, error) {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return 0, fmt.Errorf("%q is not a URL with a host", raw)
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return 0, fmt.Errorf("%q has no valid port", raw)
		}
		return uint16(n), nil
	}
	switch u.Scheme {
	case "https":
		return 443, nil
	case "http":
		return 80, nil
	}
	return 0, fmt.Errorf("%q: no port and an unknown scheme", raw)
}

// sessionFolders are the per-session folders the agent may write.
var sessionFolders = []string{"home", "tmp", "work"}

// checkSecrets refuses a secret file the agent could read: under a path of
// its policy, or in any session's own folders.
func checkSecrets(p sandbox.Policy, sessionsDir string, files []string) error {
	for _, f := range files {
		if p.Covers(f) {
			return fmt.Errorf("%w: the secret file %s lies under a path the agent may read; move it elsewhere", errConfinement, f)
		}
		for _, path := range []string{f, resolved(f)} {
			rel, err := filepath.Rel(resolved(sessionsDir), path)
			if err != nil {
				continue
			}
			parts := strings.Split(rel, string(filepath.Separator))
			if len(parts) >= 2 && uuid.Valid(parts[0]) && slices.Contains(sessionFolders, parts[1]) {
				return fmt.Errorf("%w: the secret file %s lies in a session's own folder; move it elsewhere", errConfinement, f)
			}
		}
	}
	return nil
}

func resolved(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// checkListeners refuses a TCP listener whose port the agent may connect
// to (Landlock's port rules cannot tell addresses apart).
func checkListeners(p sandbox.Policy, lns ...net.Listener) error {
	for _, ln := range lns {
		if ta, ok := ln.Addr().(*net.TCPAddr); ok && p.Connects(ta.Port) {
			return fmt.Errorf("%w: the agent may connect to port %d (it needs it for the API, the proxy or the devvm), and the web listens on it at %s; choose another port", errConfinement, ta.Port, ta)
		}
	}
	return nil
}

// reportSandbox says at start what the agent's sandbox gets on this kernel
// (never silently less) and sets breakglass_agent_sandbox_abi.
func reportSandbox(st sandbox.Status, reg prometheus.Registerer, log hclog.Logger) error {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "breakglass_agent_sandbox_abi",
		Help: "The Landlock ABI the agent's sandbox runs with (0: none, the agent is not confined).",
	})
	if err := reg.Register(g); err != nil {
		return err
	}
	g.Set(float64(st.ABI))
	args := []any{"abi", st.ABI, "kernel_abi", st.Kernel, "level", string(st.Level)}
	if st.Level == sandbox.LevelFull {
		log.Info("agent sandbox: "+st.String(), args...)
	} else {
		log.Warn("agent sandbox: "+st.String(), args...)
	}
	if os.Geteuid() == 0 {
		log.Warn("running as root: Landlock does not keep root out of other processes' /proc/<pid>/environ; run the web as an unprivileged user (the image does)")
	}
	return nil
}
