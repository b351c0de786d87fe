package main

import (
	"context"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/stacktest"
)

// standIn serves a keyholder stand-in on the stack's socket that reports
// presence mode.
func standIn(t *testing.T, s *stacktest.Stack, mode string) {
	t.Helper()
	khMux := http.NewServeMux()
	khMux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"ok":true}`)
	})
	khMux.HandleFunc("GET /v1/verbs", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"vmid":102,"presence":"`+mode+`","verbs":[{"name":"status","mutating":false}]}`)
	})
	ln, err := ipc.Listen(filepath.Join(s.SocketDir, ipc.SocketName))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ipc.Serve(ctx, ln, ipc.ServerConfig{Handler: khMux}) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
	})
}

// BREAKGLASS_AGENT_MUTATING_VERBS=allow is refused at start when the
// keyholder requires operator presence: the agent cannot sign.
func TestAllowRefusedWhenPresenceRequired(t *testing.T) {
	s := newStack(t)
	standIn(t, s, "required")
	cmd := command(t, buildWeb(t), append(s.WebEnv(), "BREAKGLASS_AGENT_MUTATING_VERBS=allow")...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	assert.NotZero(t, exit.ExitCode())
	assert.Contains(t, string(out), "BREAKGLASS_AGENT_MUTATING_VERBS=allow is refused: the keyholder requires operator presence")
}

// /readyz says which presence mode the keyholder runs in, and warns when it
// is off.
func TestReadyzSaysPresence(t *testing.T) {
	for _, mode := range []string{"required", "off"} {
		t.Run(mode, func(t *testing.T) {
			s := newStack(t)
			standIn(t, s, mode)
			w := s.StartWeb(t)
			code, body := w.Do(t, http.MethodGet, "/readyz", "")
			assert.Equal(t, http.StatusOK, code, body)
			assert.Contains(t, body, `"presence":"`+mode+`"`)
			if mode == "off" {
				assert.Contains(t, body, "operator presence is off")
			}
		})
	}
}
