package keyholder_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/testing/logtest"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/sshdtest"
)

// The RP ID and origin of the tests' passkeys.
const (
	passkeyRPID   = "localhost"
	passkeyOrigin = "http://localhost:8080"
)

// writeOperators writes an operators file with lines into dir.
func writeOperators(t testing.TB, dir string, lines ...string) string {
	t.Helper()
	p := filepath.Join(dir, "operators")
	require.NoError(t, os.WriteFile(p, []byte("# operators\n"+strings.Join(lines, "\n")+"\n"), 0o644))
	return p
}

// shortDir returns a fresh directory with a short path: a Unix socket path
// must fit in 108 bytes, which t.TempDir's long names can exceed.
func shortDir(t testing.TB) string {
	t.Helper()
	d, err := os.MkdirTemp("", "kh")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// newSigner returns a fresh Ed25519 signer.
func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

// env is a keyholder serving on a real socket in front of some PVE host.
type env struct {
	dir        string
	socket     string
	pveKeyPath string
	pveKey     ssh.Signer
	devvmPath  string
	knownHosts string
	log        *logtest.Buffer
	reg        *prometheus.Registry
	kh         *keyholder.Keyholder
	client     *ipc.Client
}

// options of newEnv.
type options struct {
	// pveAddr is the PVE host's address; pinned with pveHostKey.
	pveAddr    string
	pveHostKey ssh.PublicKey
	timeout    time.Duration
	// revokePVE pins a second, fresh key for the PVE host and marks
	// pveHostKey @revoked, as after a rotation following a leak.
	revokePVE bool
	// mutate edits the config before New.
	mutate func(*keyholder.Config)
}

// newKeys writes the PVE and devvm client keys into dir.
func newKeys(t testing.TB, dir string) (pvePath string, pve ssh.Signer, devvmPath string) {
	t.Helper()
	pvePath, _, pve = sshdtest.WriteKey(t, dir)
	devvmPath, _, _ = sshdtest.WriteKey(t, dir)
	return pvePath, pve, devvmPath
}

// knownHostsFor writes a known_hosts pinning pveHostKey at pveAddr and a
// random key for the (never dialled) devvm at 127.0.0.1:2222.
func knownHostsFor(t testing.TB, dir, pveAddr string, pveHostKey ssh.PublicKey, revoke bool) string {
	t.Helper()
	lines := knownhosts.Line([]string{knownhosts.Normalize(pveAddr)}, pveHostKey) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2222")}, newSigner(t).PublicKey()) + "\n"
	if revoke {
		lines += knownhosts.Line([]string{knownhosts.Normalize(pveAddr)}, newSigner(t).PublicKey()) + "\n" +
			"@revoked * " + string(ssh.MarshalAuthorizedKey(pveHostKey))
	}
	p := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(p, []byte(lines), 0o644))
	return p
}

// hostPort splits addr for a keyholder.Host.
func hostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	tcp, err := net.ResolveTCPAddr("tcp", addr)
	require.NoError(t, err)
	return tcp.IP.String(), tcp.Port
}

// newEnv starts a keyholder on a socket. The PVE client key is generated
// unless keyPath is set; the caller makes the PVE host trust it.
func newEnv(t testing.TB, dir, pveKeyPath string, pveKey ssh.Signer, devvmPath string, o options) *env {
	t.Helper()
	e := &env{
		dir:        dir,
		socket:     filepath.Join(dir, "run", ipc.SocketName),
		pveKeyPath: pveKeyPath,
		pveKey:     pveKey,
		devvmPath:  devvmPath,
		log:        &logtest.Buffer{},
		reg:        prometheus.NewRegistry(),
	}
	e.knownHosts = knownHostsFor(t, dir, o.pveAddr, o.pveHostKey, o.revokePVE)
	host, port := hostPort(t, o.pveAddr)
	cfg := keyholder.Config{
		PVE:            keyholder.Host{Host: host, Port: port, User: "root"},
		PVEKeyPath:     pveKeyPath,
		DevVM:          keyholder.Host{Host: "127.0.0.1", Port: 2222, User: "breakglass"},
		DevVMKeyPath:   devvmPath,
		KnownHostsPath: e.knownHosts,
		VerbTimeout:    o.timeout,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "keyholder", JSONFormat: true, Output: e.log, Level: hclog.Debug,
		}),
		Registerer: e.reg,
		Gatherer:   e.reg,
		// Tests not about presence say so explicitly; presence_test.go
		// turns it on.
		Presence: presence.ModeOff,
	}
	if o.mutate != nil {
		o.mutate(&cfg)
	}
	kh, err := keyholder.New(cfg)
	require.NoError(t, err)
	e.kh = kh
	l, err := ipc.Listen(e.socket)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ipc.Serve(ctx, l, ipc.ServerConfig{Handler: kh.Handler(), ShutdownTimeout: time.Second})
	}()
	e.client = ipc.NewClient(e.socket)
	t.Cleanup(func() {
		e.client.Close()
		cancel()
		// Bounded, so a test whose check was removed fails rather than
		// hangs in its cleanup.
		within(t, cleanupWait, "keyholder Close", kh.Close)
		within(t, cleanupWait, "ipc.Serve to return", func() { require.NoError(t, <-done) })
	})
	return e
}

// cleanupWait bounds each wait of a test's cleanup.
const cleanupWait = 5 * time.Second

// within runs fn and fails the test if it has not returned within d; it
// then stops waiting (fn's goroutine is left behind, the test already
// failed).
func within(t testing.TB, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Errorf("%s did not return within %v", what, d)
	}
}

// simEnv is a keyholder in front of the simulated Proxmox host.
type simEnv struct {
	*env
	vm  *pvesim.VM
	sim *pvesim.Server
}

// newSimEnv starts pvesim (VM 102, running) and a keyholder pinned to it.
func newSimEnv(t testing.TB, o options) *simEnv {
	t.Helper()
	dir := shortDir(t)
	pvePath, pveKey, devvmPath := newKeys(t, dir)
	vm := pvesim.NewVM(102)
	hostKey := newSigner(t)
	sim, err := pvesim.Start(pvesim.Config{VM: vm, AuthorizedKey: pveKey.PublicKey(), HostKey: hostKey, StopWait: 5 * time.Second,
		AllowGuestExec: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	o.pveAddr = sim.Addr
	if o.pveHostKey == nil {
		o.pveHostKey = hostKey.PublicKey()
	}
	return &simEnv{env: newEnv(t, dir, pvePath, pveKey, devvmPath, o), vm: vm, sim: sim}
}

// raw sends one request exactly as written (target unnormalised) over the
// socket and returns the status and body.
func (e *env) raw(t testing.TB, method, target, body string) (int, string) {
	t.Helper()
	return e.rawWithin(t, 30*time.Second, method, target, body)
}

// rawWithin is raw failing the test when no answer came within d: for
// answers that must come at once (a refusal), so a broken check fails the
// test in seconds.
func (e *env) rawWithin(t testing.TB, d time.Duration, method, target, body string) (int, string) {
	t.Helper()
	c, err := net.Dial("unix", e.socket)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(d)))
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: keyholder\r\nConnection: close\r\nContent-Length: %d\r\n", method, target, len(body))
	if body != "" {
		req += "Content-Type: application/json\r\n"
	}
	// Write while reading: the server may answer and close before it has
	// read an oversized request, so a write error is not fatal.
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = io.WriteString(c, req+"\r\n"+body)
	}()
	defer func() { <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	defer c.Close() // unblocks the writer when the server stopped reading
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(b)
}

// errorOf decodes an {"error":…} body.
func errorOf(t testing.TB, body string) string {
	t.Helper()
	var eb ipc.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(body), &eb), "body %q", body)
	return eb.Error
}

// reasonOf decodes the reason code of an {"error":…,"reason":…} body.
func reasonOf(t testing.TB, body string) string {
	t.Helper()
	var eb ipc.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(body), &eb), "body %q", body)
	return eb.Reason
}
