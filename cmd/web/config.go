package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"breakglass/internal/claude"
	"breakglass/internal/notify"
	"breakglass/internal/power"
	"breakglass/internal/sandbox"
)

// config is the web's configuration, read from the environment (README.md, Configuration).
type config struct {
	Listen             string
	MetricsListen      string
	SocketDir          string
	SessionsDir        string
	ClaudeBin          string
	Agent              string
	Model              string
	MaxConcurrentTurns int
	TurnTimeout        time.Duration
	SSEKeepAlive       time.Duration
	BearerToken        string
	// BearerTokenFile is API_BEARER_TOKEN_FILE: when set, the token is
	// read from it (readSecrets) and API_BEARER_TOKEN is ignored.
	BearerTokenFile string
	// SecretFiles are the files holding secrets (the bearer token file,
	// the ntfy token file): the agent's sandbox must not reach them.
	SecretFiles []string
	// SandboxMaxABI is sandbox.Policy.MaxABI, from BREAKGLASS_SANDBOX_MAX_ABI.
	SandboxMaxABI      int
	TrustedProxies     []netip.Prefix
	DevVMHost          string
	DevVMPort          int
	DevVMUser          string
	KnownHosts         string
	MaxBudgetUSD       float64
	APIRetryCutoff     time.Duration
	AgentMutatingVerbs power.Policy
	SessionIdle        time.Duration
	RetainFor          time.Duration
	// The operator in the loop (docs/operator-loop.md).
	AgentMode         claude.Mode
	PermissionTimeout time.Duration
	// Notifications (docs/notifications.md).
	NtfyURL       string
	NtfyTokenFile string
	PublicURL     string
	WatchInterval time.Duration
}

// configFromEnv reads the variables of the README (Configuration) through getenv. Every bad
// value is reported, each naming its variable.
func configFromEnv(getenv func(string) string) (config, error) {
	p := envParser{getenv: getenv}
	cfg := config{
		Listen:             p.addr("BREAKGLASS_LISTEN", ":8080"),
		MetricsListen:      p.addr("BREAKGLASS_METRICS_LISTEN", ":9090"),
		SocketDir:          p.absPath("BREAKGLASS_SOCKET_DIR", "/run/breakglass"),
		SessionsDir:        p.absPath("BREAKGLASS_SESSIONS_DIR", "/workspace/sessions"),
		ClaudeBin:          p.str("BREAKGLASS_CLAUDE_BIN", "claude"),
		Agent:              p.str("BREAKGLASS_AGENT", "breakglass"),
		Model:              p.str("BREAKGLASS_MODEL", "sonnet"),
		MaxConcurrentTurns: p.intIn("BREAKGLASS_MAX_CONCURRENT_TURNS", 2, 1, 64),
		TurnTimeout:        p.seconds("BREAKGLASS_TURN_TIMEOUT_SECONDS", 1800, 1, 24*3600),
		SSEKeepAlive:       p.seconds("BREAKGLASS_SSE_KEEPALIVE_SECONDS", 20, 1, 3600),
		BearerToken:        getenv("API_BEARER_TOKEN"),
		BearerTokenFile:    p.optionalAbsPath("API_BEARER_TOKEN_FILE"),
		SandboxMaxABI:      p.sandboxABI("BREAKGLASS_SANDBOX_MAX_ABI"),
		TrustedProxies:     p.prefixes("BREAKGLASS_TRUSTED_PROXIES"),
		DevVMHost:          p.ip("BREAKGLASS_DEVVM_HOST", "10.0.10.10"),
		DevVMPort:          p.intIn("BREAKGLASS_DEVVM_PORT", 22, 1, 65535),
		DevVMUser:          p.str("BREAKGLASS_DEVVM_USER", "breakglass"),
		KnownHosts:         p.absPath("BREAKGLASS_KNOWN_HOSTS", "/etc/breakglass/known_hosts"),
		MaxBudgetUSD:       p.budget("BREAKGLASS_MAX_BUDGET_USD"),
		APIRetryCutoff:     p.seconds("BREAKGLASS_API_RETRY_CUTOFF_SECONDS", 300, 1, 24*3600),
		AgentMutatingVerbs: p.policy("BREAKGLASS_AGENT_MUTATING_VERBS"),
		SessionIdle:        p.seconds("BREAKGLASS_SESSION_IDLE_SECONDS", 300, 1, 7*24*3600),
		AgentMode:          p.mode("BREAKGLASS_AGENT_MODE"),
		PermissionTimeout:  p.seconds("BREAKGLASS_PERMISSION_TIMEOUT_SECONDS", 600, 1, 24*3600),
		// Retention archives, never deletes; unset or 0 is off.
		RetainFor:     time.Duration(p.intIn("BREAKGLASS_RETAIN_DAYS", 0, 0, 36500)) * 24 * time.Hour,
		NtfyURL:       p.httpURL("BREAKGLASS_NTFY_URL"),
		NtfyTokenFile: p.optionalAbsPath("BREAKGLASS_NTFY_TOKEN_FILE"),
		PublicURL:     p.httpURL("BREAKGLASS_PUBLIC_URL"),
		WatchInterval: p.seconds("BREAKGLASS_WATCH_SECONDS", 60, 1, 24*3600),
	}
	if cfg.BearerTokenFile != "" {
		cfg.BearerToken = "" // the file is preferred; readSecrets fills it
	}
	if cfg.BearerToken != "" && len(cfg.BearerToken) < 16 {
		p.fail("API_BEARER_TOKEN", "must be at least 16 characters when set")
	}
	// The VAPID private key is made at first start, so it need not exist
	// yet; where it will lie is checked all the same.
	vapid := filepath.Join(cfg.SessionsDir, pushDir, notify.VAPIDFile)
	for _, f := range []string{cfg.BearerTokenFile, cfg.NtfyTokenFile, vapid} {
		if f != "" {
			cfg.SecretFiles = append(cfg.SecretFiles, f)
		}
	}
	if len(p.errs) > 0 {
		return config{}, errors.Join(p.errs...)
	}
	return cfg, nil
}

// envParser reads variables, collecting one error per bad value.
type envParser struct {
	getenv func(string) string
	errs   []error
}

func (p *envParser) fail(name, why string) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", name, why))
}

func (p *envParser) str(name, def string) string {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	if strings.ContainsAny(v, "\x00\r\n") {
		p.fail(name, "contains a control character")
	}
	return v
}

func (p *envParser) addr(name, def string) string {
	v := p.str(name, def)
	if _, port, err := net.SplitHostPort(v); err != nil {
		p.fail(name, fmt.Sprintf("%q is not host:port", v))
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		p.fail(name, fmt.Sprintf("%q has no valid port", v))
	}
	return v
}

func (p *envParser) absPath(name, def string) string {
	v := p.str(name, def)
	if !strings.HasPrefix(v, "/") {
		p.fail(name, fmt.Sprintf("%q is not an absolute path", v))
	}
	return v
}

// sandboxABI reads the cap on the agent sandbox's Landlock ABI: empty for
// the highest the kernel has, 0 for none at all, 1 to sandbox.LatestABI
// for at most that (for tests and kernel bugs; the web says what it costs).
func (p *envParser) sandboxABI(name string) int {
	v := p.getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > sandbox.LatestABI {
		p.fail(name, fmt.Sprintf("%q: a whole number between 0 (no Landlock) and %d expected", v, sandbox.LatestABI))
		return 0
	}
	if n == 0 {
		return sandbox.NoLandlock
	}
	return n
}

// maxSecretFile bounds a secret file's size.
const maxSecretFile = 4 << 10

// readSecrets fills cfg.BearerToken from cfg.BearerTokenFile when set:
// the file's content without surrounding whitespace, at least 16
// characters.
func readSecrets(cfg *config) error {
	if cfg.BearerTokenFile == "" {
		return nil
	}
	b, err := readSmallFile(cfg.BearerTokenFile, maxSecretFile)
	if err != nil {
		return fmt.Errorf("API_BEARER_TOKEN_FILE: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if len(tok) < 16 || strings.ContainsAny(tok, " \t\r\n\x00") {
		return errors.New("API_BEARER_TOKEN_FILE: the token must be one word of at least 16 characters")
	}
	cfg.BearerToken = tok
	return nil
}

func (p *envParser) intIn(name string, def, lo, hi int) int {
	v := p.getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < lo || n > hi {
		p.fail(name, fmt.Sprintf("%q: a whole number between %d and %d expected", v, lo, hi))
		return def
	}
	return n
}

// mode reads an agent mode: autopilot, careful (the default) or read-only.
func (p *envParser) mode(name string) claude.Mode {
	v := p.getenv(name)
	if v == "" {
		return claude.DefaultMode
	}
	m := claude.Mode(v)
	if !m.Valid() {
		p.fail(name, fmt.Sprintf("%q: autopilot, careful or read-only expected", v))
		return claude.DefaultMode
	}
	return m
}

func (p *envParser) seconds(name string, def, lo, hi int) time.Duration {
	return time.Duration(p.intIn(name, def, lo, hi)) * time.Second
}

func (p *envParser) ip(name, def string) string {
	v := p.str(name, def)
	if _, err := netip.ParseAddr(v); err != nil {
		p.fail(name, fmt.Sprintf("%q is not an IP address (names are refused: it must work with DNS down)", v))
	}
	return v
}

func (p *envParser) prefixes(name string) []netip.Prefix {
	v := p.getenv(name)
	if strings.TrimSpace(v) == "" {
		return nil
	}
	var out []netip.Prefix
	for _, s := range strings.Split(v, ",") {
		s = strings.TrimSpace(s)
		if s == "" {
			continue
		}
		if pr, err := netip.ParsePrefix(s); err == nil {
			out = append(out, pr.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		p.fail(name, fmt.Sprintf("%q is not a CIDR or an IP address", s))
	}
	if len(out) == 0 {
		p.fail(name, "no CIDR in the list")
	}
	return out
}

func (p *envParser) budget(name string) float64 {
	v := p.getenv(name)
	if v == "" {
		return 0
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || f <= 0 || f > 1000 {
		p.fail(name, fmt.Sprintf("%q: a positive amount of US dollars up to 1000 expected", v))
		return 0
	}
	return f
}

func (p *envParser) policy(name string) power.Policy {
	pol, err := power.ParsePolicy(p.getenv(name))
	if err != nil {
		p.fail(name, err.Error())
	}
	return pol
}

// httpURL reads an optional http(s) URL with a host and no user info.
func (p *envParser) httpURL(name string) string {
	v := p.str(name, "")
	if v == "" {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.User != nil {
		p.fail(name, fmt.Sprintf("%q is not an http(s) URL (no user info; a token goes in a file)", v))
		return ""
	}
	return v
}

// optionalAbsPath reads an optional absolute path.
func (p *envParser) optionalAbsPath(name string) string {
	if p.getenv(name) == "" {
		return ""
	}
	return p.absPath(name, "")
}
