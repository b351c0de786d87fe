package keyholder_test

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/keyholder"
	"breakglass/internal/testing/sshdtest"
	"breakglass/internal/testing/testbin"
)

// gateSSHD is a stock OpenSSH sshd whose only key runs the built pve-gate as
// its forced command, with /bin/echo standing in for qm: each verb prints
// the qm arguments it would run.
type gateSSHD struct {
	sshd    *sshdtest.Server
	keyPath string
	key     ssh.Signer
	devvm   string
}

// buildGate is cmd/pve-gate, built once per test process.
func buildGate(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(testbin.Build(tb, "breakglass/cmd/pve-gate"), "pve-gate")
}

func startGateSSHD(tb testing.TB, dir string) *gateSSHD {
	tb.Helper()
	gate := buildGate(tb)
	pvePath, pveKey, devvmPath := newKeys(tb, dir)
	command := fmt.Sprintf(`restrict,command="%s --qm /bin/echo --vmid 102 --lock %s"`, gate, filepath.Join(dir, "gate.lock"))
	s := sshdtest.Start(tb, sshdtest.Config{AuthorizedKeys: sshdtest.AuthorizedKey(command, pveKey.PublicKey())})
	return &gateSSHD{sshd: s, keyPath: pvePath, key: pveKey, devvm: devvmPath}
}

// TestVerbsThroughStockSSHD drives the real pve-gate under Debian's sshd.
func TestVerbsThroughStockSSHD(t *testing.T) {
	dir := shortDir(t)
	g := startGateSSHD(t, dir)
	e := newEnv(t, dir, g.keyPath, g.key, g.devvm, options{
		pveAddr: g.sshd.Addr, pveHostKey: g.sshd.HostKey,
		mutate: func(c *keyholder.Config) { c.PVE.User = g.sshd.User },
	})
	cases := []struct{ verb, want string }{
		{"status", "status 102 --verbose"},
		{"reset", "reset 102"},
		{"stop", "stop 102"},
		{"start", "start 102"},
		{"forensics", "qm status"},
	}
	for _, c := range cases {
		t.Run(c.verb, func(t *testing.T) {
			res, err := e.client.Run(context.Background(), c.verb, "operator:test")
			require.NoError(t, err)
			if c.verb != "forensics" {
				assert.Equal(t, 0, res.ExitCode, res.Output)
			}
			assert.Contains(t, res.Output, c.want)
		})
	}
}

// TestStockSSHDHostKeyMismatch: the real sshd presenting a key other than
// the pinned one gets no command.
func TestStockSSHDHostKeyMismatch(t *testing.T) {
	dir := shortDir(t)
	g := startGateSSHD(t, dir)
	e := newEnv(t, dir, g.keyPath, g.key, g.devvm, options{
		pveAddr: g.sshd.Addr, pveHostKey: newSigner(t).PublicKey(),
		mutate: func(c *keyholder.Config) { c.PVE.User = g.sshd.User },
	})
	status, body := e.raw(t, "POST", "/v1/verbs/reset", "")
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Contains(t, errorOf(t, body), "host key mismatch")
	assert.False(t, strings.Contains(g.sshd.Log(), "Accepted publickey"), "no login happened")
}
