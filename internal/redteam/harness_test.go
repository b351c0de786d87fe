package redteam

import (
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/testbin"
)

// probeName is the attacker's tool's name in the work folder.
const probeName = "probe"

// Verdicts the probe prints: "ATTACK <what>: <verdict>[: detail]".
const (
	blocked   = "BLOCKED"
	succeeded = "SUCCEEDED"
	noTarget  = "NO-TARGET"
	planted   = "PLANTED"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// probeBin is the attacker's tool, built once with the binaries.
func probeBin(t testing.TB) string {
	t.Helper()
	return filepath.Join(testbin.Build(t, "breakglass/internal/redteam/probe"), probeName)
}

// agentUser is the user the web, the keyholder and so the agent run as:
// not root (Landlock does not keep root out of another process's
// /proc/<pid>/environ), and with a passwd entry (OpenSSH refuses a uid
// with no name). nobody has both. When the tests do not run as root they
// run everything as themselves.
func agentUser() (uid, gid int) {
	if os.Geteuid() != 0 {
		return os.Geteuid(), os.Getegid()
	}
	return 65534, 65534
}

// runAs is agentUser as a credential for a child, nil when the tests are
// not root (the child runs as the tests' user).
func runAs() *syscall.Credential {
	if os.Geteuid() != 0 {
		return nil
	}
	uid, gid := agentUser()
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// world is internal/testing/stacktest's stack, run as the agent's user,
// plus the secrets the agent hunts for.
type world struct {
	*stacktest.Stack
	secretFile string // the bearer token file (API_BEARER_TOKEN_FILE)
	tokenFile  string // its content
	tokenEnv   string // API_BEARER_TOKEN, also set: the web's environment holds it
}

func newWorld(t testing.TB, script []apidouble.Turn) *world {
	t.Helper()
	s := stacktest.New(t, stacktest.Options{Script: script, RunAs: runAs(), Path: "/usr/local/bin:/usr/bin:/bin"})
	w := &world{
		Stack:      s,
		secretFile: filepath.Join(s.Dir, "secrets", "bearer"),
		tokenFile:  "redteam-file-token-" + randHex(t),
		tokenEnv:   "redteam-env-token-" + randHex(t),
	}
	require.NoError(t, os.MkdirAll(filepath.Dir(w.secretFile), 0o700))
	require.NoError(t, os.WriteFile(w.secretFile, []byte(w.tokenFile+"\n"), 0o600))
	uid, gid := agentUser()
	for _, p := range []string{filepath.Dir(w.secretFile), w.secretFile} {
		require.NoError(t, os.Lchown(p, uid, gid))
	}
	return w
}

// startWeb starts a web that holds the bearer token, in a file and in its
// environment.
func (w *world) startWeb(t testing.TB) *stacktest.Web {
	t.Helper()
	return w.StartWeb(t, "API_BEARER_TOKEN_FILE="+w.secretFile, "API_BEARER_TOKEN="+w.tokenEnv)
}

func randHex(t testing.TB) string {
	b := make([]byte, 12)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return fmt.Sprintf("%x", b)
}

// port is the port of a listener's URL.
func port(t testing.TB, u string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(strings.TrimPrefix(strings.TrimSuffix(u, "/metrics"), "http://"))
	require.NoError(t, err)
	return p
}
