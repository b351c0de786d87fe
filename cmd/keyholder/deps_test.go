package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDependencies keeps the keyholder's attack surface small: its build
// (tests excluded) may not start processes, expose profiling, or carry the
// web's router, UI, session or claude code.
func TestDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	require.NoError(t, err)
	deps := strings.Fields(string(out))
	require.Contains(t, deps, "net/http", "sanity: the list is the real one")
	require.Contains(t, deps, "golang.org/x/crypto/ssh")

	forbidden := []struct{ prefix, why string }{
		{"os/exec", "no subprocesses"},
		{"net/http/pprof", "no profiling endpoints"},
		{"runtime/pprof", "no profiling"},
		{"net/rpc", "no other RPC"},
		{"plugin", "no loaded code"},
		{"github.com/gorilla/", "the web's router"},
		{"github.com/gliderlabs/", "an SSH server library"},
		{"breakglass/ui", "the web's UI"},
		{"breakglass/internal/api", "the web's API"},
		{"breakglass/internal/session", "the web's sessions"},
		{"breakglass/internal/claude", "the agent runner"},
		{"breakglass/internal/power", "the web's verb service"},
		{"breakglass/internal/pvecmd", "the agent's pve command"},
		{"breakglass/internal/pvegate", "the Proxmox host's side"},
		{"breakglass/internal/devstack", "the local stack"},
		{"breakglass/internal/testing/", "test doubles and harnesses"},
	}
	for _, d := range deps {
		for _, f := range forbidden {
			if d == f.prefix || strings.HasPrefix(d, strings.TrimSuffix(f.prefix, "/")+"/") {
				assert.Failf(t, "forbidden dependency", "%s (%s)", d, f.why)
			}
		}
	}
}
