package main

import (
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/power"
)

func TestConfigDefaults(t *testing.T) {
	cfg, err := configFromEnv(func(string) string { return "" })
	require.NoError(t, err)
	assert.Equal(t, config{
		Listen:             ":8080",
		MetricsListen:      ":9090",
		SocketDir:          "/run/breakglass",
		SessionsDir:        "/workspace/sessions",
		ClaudeBin:          "claude",
		Agent:              "breakglass",
		Model:              "sonnet",
		MaxConcurrentTurns: 2,
		TurnTimeout:        1800 * time.Second,
		SSEKeepAlive:       20 * time.Second,
		DevVMHost:          "10.0.10.10",
		DevVMPort:          22,
		DevVMUser:          "breakglass",
		KnownHosts:         "/etc/breakglass/known_hosts",
		APIRetryCutoff:     300 * time.Second,
		AgentMutatingVerbs: power.PolicyApprove,
		SessionIdle:        300 * time.Second,
		WatchInterval:      60 * time.Second,
		AgentMode:          claude.ModeCareful,
		PermissionTimeout:  600 * time.Second,
		SecretFiles:        []string{"/workspace/sessions/push/vapid.json"},
	}, cfg)
}

func TestConfigValues(t *testing.T) {
	env := map[string]string{
		"BREAKGLASS_TRUSTED_PROXIES":            "10.42.0.0/16, 192.168.1.5,::1",
		"BREAKGLASS_MAX_BUDGET_USD":             "2.5",
		"API_BEARER_TOKEN":                      "0123456789abcdef0123",
		"BREAKGLASS_AGENT_MUTATING_VERBS":       "deny",
		"BREAKGLASS_SESSION_IDLE_SECONDS":       "60",
		"BREAKGLASS_RETAIN_DAYS":                "90",
		"BREAKGLASS_NTFY_URL":                   "https://ntfy.example/breakglass",
		"BREAKGLASS_NTFY_TOKEN_FILE":            "/etc/breakglass/ntfy-token",
		"BREAKGLASS_PUBLIC_URL":                 "https://bg.example",
		"BREAKGLASS_WATCH_SECONDS":              "15",
		"BREAKGLASS_AGENT_MODE":                 "read-only",
		"BREAKGLASS_PERMISSION_TIMEOUT_SECONDS": "90",
	}
	cfg, err := configFromEnv(func(k string) string { return env[k] })
	require.NoError(t, err)
	assert.Equal(t, []netip.Prefix{
		netip.MustParsePrefix("10.42.0.0/16"),
		netip.MustParsePrefix("192.168.1.5/32"),
		netip.MustParsePrefix("::1/128"),
	}, cfg.TrustedProxies)
	assert.Equal(t, 2.5, cfg.MaxBudgetUSD)
	assert.Equal(t, power.PolicyDeny, cfg.AgentMutatingVerbs)
	assert.Equal(t, time.Minute, cfg.SessionIdle)
	assert.Equal(t, 90*24*time.Hour, cfg.RetainFor)
	assert.Equal(t, "https://ntfy.example/breakglass", cfg.NtfyURL)
	assert.Equal(t, "/etc/breakglass/ntfy-token", cfg.NtfyTokenFile)
	assert.Equal(t, "https://bg.example", cfg.PublicURL)
	assert.Equal(t, 15*time.Second, cfg.WatchInterval)
	assert.Equal(t, claude.ModeReadOnly, cfg.AgentMode)
	assert.Equal(t, 90*time.Second, cfg.PermissionTimeout)
}

func TestConfigRefusals(t *testing.T) {
	tests := []struct {
		name, key, value string
	}{
		{"listen-no-port", "BREAKGLASS_LISTEN", "localhost"},
		{"metrics-bad-port", "BREAKGLASS_METRICS_LISTEN", ":99999"},
		{"relative-sessions", "BREAKGLASS_SESSIONS_DIR", "sessions"},
		{"relative-socket", "BREAKGLASS_SOCKET_DIR", "run"},
		{"turns-zero", "BREAKGLASS_MAX_CONCURRENT_TURNS", "0"},
		{"turns-word", "BREAKGLASS_MAX_CONCURRENT_TURNS", "two"},
		{"timeout-negative", "BREAKGLASS_TURN_TIMEOUT_SECONDS", "-5"},
		{"keepalive-zero", "BREAKGLASS_SSE_KEEPALIVE_SECONDS", "0"},
		{"proxies-bad", "BREAKGLASS_TRUSTED_PROXIES", "10.0.0.0/8,proxy.local"},
		{"proxies-empty-list", "BREAKGLASS_TRUSTED_PROXIES", " , "},
		{"devvm-name", "BREAKGLASS_DEVVM_HOST", "devvm.lan"},
		{"devvm-port", "BREAKGLASS_DEVVM_PORT", "0"},
		{"budget-negative", "BREAKGLASS_MAX_BUDGET_USD", "-1"},
		{"cutoff-word", "BREAKGLASS_API_RETRY_CUTOFF_SECONDS", "five"},
		{"short-token", "API_BEARER_TOKEN", "short"},
		{"policy", "BREAKGLASS_AGENT_MUTATING_VERBS", "sometimes"},
		{"newline", "BREAKGLASS_MODEL", "sonnet\nopus"},
		{"idle-zero", "BREAKGLASS_SESSION_IDLE_SECONDS", "0"},
		{"retain-negative", "BREAKGLASS_RETAIN_DAYS", "-1"},
		{"retain-word", "BREAKGLASS_RETAIN_DAYS", "forever"},
		{"ntfy-not-url", "BREAKGLASS_NTFY_URL", "ntfy.sh/topic"},
		{"ntfy-userinfo", "BREAKGLASS_NTFY_URL", "https://u:secret@ntfy.sh/topic"},
		{"ntfy-token-relative", "BREAKGLASS_NTFY_TOKEN_FILE", "token"},
		{"public-url-scheme", "BREAKGLASS_PUBLIC_URL", "ftp://bg.example"},
		{"watch-zero", "BREAKGLASS_WATCH_SECONDS", "0"},
		{"mode-unknown", "BREAKGLASS_AGENT_MODE", "yolo"},
		{"mode-case", "BREAKGLASS_AGENT_MODE", "Careful"},
		{"permission-timeout-zero", "BREAKGLASS_PERMISSION_TIMEOUT_SECONDS", "0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := configFromEnv(func(k string) string {
				if k == tt.key {
					return tt.value
				}
				return ""
			})
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.key)
		})
	}
}
