package pvecmd

// The whole verb path with nothing faked but the Proxmox host: pve → the
// web's handlers (package power) → the keyholder client over a Unix socket
// (package ipc) → the real keyholder → SSH with a pinned host key → the
// simulated Proxmox host running the real pve-gate logic (package pvesim).

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/power"
	"breakglass/internal/presence"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/sshdtest"
	"breakglass/internal/turntoken"
)

// chain is the web's verb path in front of a real keyholder and pvesim.
type chain struct {
	*web
	*proxmox
}

func newChain(t *testing.T, cfg power.Config) *chain {
	t.Helper()
	p := startProxmox(t)
	cfg.Keyholder = p.client
	return &chain{web: startWeb(t, cfg), proxmox: p}
}

// proxmox is a real keyholder on a Unix socket, SSH-ing to pvesim.
type proxmox struct {
	client *ipc.Client
	vm     *pvesim.VM
	sim    *pvesim.Server
}

func startProxmox(t *testing.T) *proxmox {
	t.Helper()
	// Unix socket paths are short (108 bytes): not t.TempDir().
	dir, err := os.MkdirTemp("", "pvecmd")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	pveKeyPath, pveKey, _ := sshdtest.WriteKey(t, dir)
	devvmKeyPath, _, _ := sshdtest.WriteKey(t, dir)
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)

	machine := pvesim.NewVM(102)
	sim, err := pvesim.Start(pvesim.Config{VM: machine, AuthorizedKey: pveKey, HostKey: hostKey, StopWait: 5 * time.Second, AllowGuestExec: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })

	knownHosts := filepath.Join(dir, "known_hosts")
	require.NoError(t, os.WriteFile(knownHosts, []byte(
		knownhosts.Line([]string{knownhosts.Normalize(sim.Addr)}, hostKey.PublicKey())+"\n"+
			// The devvm is never dialled here; the keyholder only needs it pinned.
			knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2222")}, hostKey.PublicKey())+"\n"), 0o644))
	host, portStr, err := net.SplitHostPort(sim.Addr)
	require.NoError(t, err)
	port, err := net.LookupPort("tcp", portStr)
	require.NoError(t, err)

	kh, err := keyholder.New(keyholder.Config{
		PVE:            keyholder.Host{Host: host, Port: port, User: "root"},
		PVEKeyPath:     pveKeyPath,
		DevVM:          keyholder.Host{Host: "127.0.0.1", Port: 2222, User: "breakglass"},
		DevVMKeyPath:   devvmKeyPath,
		KnownHostsPath: knownHosts,
		VerbTimeout:    30 * time.Second,
		Presence:       presence.ModeOff, // not about presence
	})
	require.NoError(t, err)
	socket := filepath.Join(dir, ipc.SocketName)
	l, err := ipc.Listen(socket)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- ipc.Serve(ctx, l, ipc.ServerConfig{Handler: kh.Handler(), ShutdownTimeout: time.Second})
	}()
	client := ipc.NewClient(socket)
	t.Cleanup(func() {
		client.Close()
		cancel()
		kh.Close()
		assert.NoError(t, <-served)
	})
	return &proxmox{client: client, vm: machine, sim: sim}
}

// startWeb is newWeb with the keyholder (and, if set, the transcript) given
// in cfg; it also serves the operator's routes, as the X-Test-User header
// says.
func startWeb(t *testing.T, cfg power.Config) *web {
	t.Helper()
	w := &web{tr: &transcript{approvals: make(chan event.ApprovalData, 8)}, tokens: &turntoken.Set{}}
	if cfg.Transcript == nil {
		cfg.Transcript = w.tr
	}
	cfg.Tokens = w.tokens
	svc, err := power.New(cfg)
	require.NoError(t, err)
	w.svc = svc
	r := routes(svc, "X-Test-User")
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, req *http.Request) {
		w.requests.Add(1)
		r.ServeHTTP(rw, req)
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

// qmCalls returns the qm commands the simulated host ran, joined by spaces.
func (c *proxmox) qmCalls() []string {
	var out []string
	for _, argv := range c.vm.Calls() {
		out = append(out, strings.Join(argv, " "))
	}
	return out
}

func TestChainStatus(t *testing.T) {
	c := newChain(t, power.Config{})
	r := pve(c.env(t, sessionA), "status")
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "status: running")
	assert.Equal(t, []string{"qm status 102 --verbose"}, c.qmCalls())
}

func TestChainResetAfterApproval(t *testing.T) {
	c := newChain(t, power.Config{Policy: power.PolicyApprove})
	done := pveAsync(c.env(t, sessionA), "reset")
	id := waitPending(t, c.web)
	assert.Empty(t, c.qmCalls(), "nothing reaches the Proxmox host before the operator answers")
	require.NoError(t, c.svc.Resolve(sessionA, id, true))
	r := waitRun(t, done)
	assert.Equal(t, 0, r.code, r.stderr)
	assert.Equal(t, []string{"qm reset 102"}, c.qmCalls(), "the Proxmox double saw the reset")
}

func TestChainDeniedResetNeverReachesTheHost(t *testing.T) {
	c := newChain(t, power.Config{Policy: power.PolicyApprove})
	done := pveAsync(c.env(t, sessionA), "reset")
	require.NoError(t, c.svc.Resolve(sessionA, waitPending(t, c.web), false))
	r := waitRun(t, done)
	assert.Equal(t, ExitDenied, r.code)
	assert.Contains(t, r.stderr, "denied by the operator")
	assert.Empty(t, c.qmCalls())
	assert.Zero(t, c.sim.Connections(), "the keyholder never dialled the Proxmox host")
}

func TestChainDeadTokenNeverReachesTheHost(t *testing.T) {
	c := newChain(t, power.Config{Policy: power.PolicyAllow})
	tok, revoke := c.tokens.Issue(sessionA)
	revoke()
	r := pve(map[string]string{EnvURL: c.url, EnvToken: tok}, "stop")
	assert.Equal(t, ExitTokenRejected, r.code)
	assert.Zero(t, c.sim.Connections())
	assert.Equal(t, pvesim.Running, c.vm.State())
}

func TestChainOperatorStop(t *testing.T) {
	c := newChain(t, power.Config{})
	req, err := http.NewRequest("POST", c.url+"/api/vm/stop", strings.NewReader(`{"session_id":"`+sessionA+`"}`))
	require.NoError(t, err)
	req.Header.Set("X-Test-User", "alice")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, pvesim.Stopped, c.vm.State())
	assert.Equal(t, []string{"qm stop 102"}, c.qmCalls())
}

func TestChainKeyholderDown(t *testing.T) {
	dir, err := os.MkdirTemp("", "pvecmd")
	require.NoError(t, err)
	defer os.RemoveAll(dir)
	client := ipc.NewClient(filepath.Join(dir, ipc.SocketName)) // nothing listens there
	defer client.Close()
	w := startWeb(t, power.Config{Keyholder: client})
	r := pve(w.env(t, sessionA), "status")
	assert.Equal(t, ExitKeyholderDown, r.code)
	assert.Contains(t, r.stderr, "keyholder down")
}
