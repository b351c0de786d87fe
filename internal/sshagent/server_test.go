package sshagent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/logtest"
)

func TestMetricsCountEveryDecision(t *testing.T) {
	w := startRawWorld(t)
	w.requireLogin(t) // bound, signed

	sign := func(c *rawConn, sid []byte, user string) {
		_, err := c.roundTrip(signReq(w.devvmKey.PublicKey(), userauthData(sid, user, w.devvmKey.PublicKey(), nil)))
		require.NoError(t, err)
	}
	bind := func(c *rawConn, host ssh.Signer, sid []byte, fwd bool) {
		_, err := c.roundTrip(extensionReq(extSessionBind, bindBody(t, host, sid, fwd)))
		require.NoError(t, err)
	}
	sid := sessionID(t, 32)

	c := dialRaw(t, w.sock) // unbound
	sign(c, sid, testUser)
	c = dialRaw(t, w.sock) // wrong user
	bind(c, w.hostKey, sid, false)
	sign(c, sid, "root")
	c = dialRaw(t, w.sock) // forwarding
	bind(c, w.hostKey, sid, true)
	sign(c, sid, testUser)
	c = dialRaw(t, w.sock) // wrong host
	bind(c, newSigner(t), sid, false)
	sign(c, sid, testUser)
	c = dialRaw(t, w.sock) // malformed
	bind(c, w.hostKey, sid, false)
	_, err := c.roundTrip(signReq(w.devvmKey.PublicKey(), []byte("not a userauth request")))
	require.NoError(t, err)
	_, err = c.roundTrip([]byte{msgLock, 0, 0, 0, 0})
	require.NoError(t, err)

	want := `
# HELP keyholder_agent_binds_total session-bind@openssh.com requests on agent.sock, by decision.
# TYPE keyholder_agent_binds_total counter
keyholder_agent_binds_total{outcome="bound"} 3
keyholder_agent_binds_total{outcome="forwarding"} 1
keyholder_agent_binds_total{outcome="malformed"} 0
keyholder_agent_binds_total{outcome="wrong_host"} 1
# HELP keyholder_agent_connections_total Connections accepted on agent.sock.
# TYPE keyholder_agent_connections_total counter
keyholder_agent_connections_total 6
# HELP keyholder_agent_signs_total Sign requests on agent.sock, by decision.
# TYPE keyholder_agent_signs_total counter
keyholder_agent_signs_total{outcome="forwarding"} 1
keyholder_agent_signs_total{outcome="malformed"} 1
keyholder_agent_signs_total{outcome="signed"} 1
keyholder_agent_signs_total{outcome="unbound"} 1
keyholder_agent_signs_total{outcome="wrong_host"} 1
keyholder_agent_signs_total{outcome="wrong_user"} 1
`
	require.NoError(t, testutil.GatherAndCompare(w.reg, strings.NewReader(want),
		"keyholder_agent_signs_total", "keyholder_agent_binds_total", "keyholder_agent_connections_total"))
	assert.Equal(t, 1.0, testutil.ToFloat64(w.srv.metrics.refused.WithLabelValues("lock")))

	// Every decision is one JSON audit line with the caller's credentials.
	for _, m := range append(w.logs.Where(t, "event", "sign"), w.logs.Where(t, "event", "bind")...) {
		assert.Equal(t, float64(os.Getuid()), m["uid"], "uid from SO_PEERCRED")
		assert.Equal(t, float64(os.Getpid()), m["pid"], "pid from SO_PEERCRED")
		assert.NotEmpty(t, m["outcome"])
	}
	assert.Len(t, w.logs.Where(t, "event", "sign"), 6)
}

func TestServeStopsWithItsContext(t *testing.T) {
	defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
	key, host := newSigner(t), newSigner(t)
	srv, err := New(Config{Key: key, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}, User: testUser})
	require.NoError(t, err)
	sock := filepath.Join(shortTempDir(t), "agent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	// Two live connections, one mid-frame: Serve must close both.
	idle := dialRaw(t, sock)
	_, err = idle.roundTrip([]byte{msgRequestIdentities})
	require.NoError(t, err)
	partial := dialRaw(t, sock)
	_, err = partial.Write(lengthOnly(10))
	require.NoError(t, err)

	cancel()
	require.NoError(t, <-done)
	assert.True(t, idle.closedByPeer())
	assert.True(t, partial.closedByPeer())
	_, err = net.Dial("unix", sock)
	assert.Error(t, err, "the listener is closed")
}

func TestConnectionLimit(t *testing.T) {
	key, host := newSigner(t), newSigner(t)
	a := startAgent(t, Config{Key: key, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}, User: testUser, MaxConnections: 2})
	first := dialRaw(t, a.sock)
	_, err := first.roundTrip([]byte{msgRequestIdentities})
	require.NoError(t, err)
	second := dialRaw(t, a.sock)
	_, err = second.roundTrip([]byte{msgRequestIdentities})
	require.NoError(t, err)

	third := dialRaw(t, a.sock)
	// Closed at once: a few seconds are plenty, and a broken limit fails
	// here in seconds rather than at sshTimeout.
	require.NoError(t, third.SetDeadline(time.Now().Add(3*time.Second)))
	assert.True(t, third.closedByPeer(), "a connection over the limit is closed")

	require.NoError(t, first.Close())
	// The first connection's slot frees once the agent sees it closed; the
	// refusal of an over-limit connection is logged, so retry on that.
	require.Eventually(t, func() bool {
		c, err := net.Dial("unix", a.sock)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = (&rawConn{c}).roundTrip([]byte{msgRequestIdentities})
		return err == nil
	}, sshTimeout, 5*time.Millisecond)
	var refused int
	for _, m := range a.logs.Where(t, "event", "connect") {
		if m["outcome"] == "refused" {
			refused++
		}
	}
	assert.Positive(t, refused, "the over-limit connection is audited")
	assert.Positive(t, testutil.ToFloat64(a.srv.metrics.refused.WithLabelValues("connection")))
}

func TestLoadHostKeys(t *testing.T) {
	devvm, other := newSigner(t).PublicKey(), newSigner(t).PublicKey()
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	ecdsaOnly, err := ssh.NewPublicKey(&ec.PublicKey)
	require.NoError(t, err)
	revoked := newSigner(t).PublicKey()
	hashed := knownhosts.HashHostname(knownhosts.Normalize("10.0.10.11:22"))
	file := writeKnownHosts(t,
		"# pinned by the operator",
		knownhosts.Line([]string{"10.0.10.10"}, devvm),
		knownhosts.Line([]string{"10.0.10.10"}, revoked),
		"@revoked * "+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(revoked))),
		knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2222")}, other),
		knownhosts.Line([]string{hashed}, devvm),
		knownhosts.Line([]string{"192.168.1.127"}, ecdsaOnly),
	)

	tests := []struct {
		name     string
		hostport string
		want     []ssh.PublicKey
		wantErr  error
	}{
		{name: "port-22", hostport: "10.0.10.10:22", want: []ssh.PublicKey{devvm}},
		{name: "bracketed-port", hostport: "127.0.0.1:2222", want: []ssh.PublicKey{other}},
		{name: "hashed", hostport: "10.0.10.11:22", want: []ssh.PublicKey{devvm}},
		{name: "other-port", hostport: "10.0.10.10:2222", wantErr: ErrNotPinned},
		{name: "no-ed25519", hostport: "192.168.1.127:22", wantErr: ErrNotPinned},
		{name: "unknown-host", hostport: "10.9.9.9:22", wantErr: ErrNotPinned},
		{name: "name-not-ip", hostport: "devvm:22"},
		{name: "no-port", hostport: "10.0.10.10"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LoadHostKeys(file, tc.hostport)
			if tc.want == nil {
				require.Error(t, err)
				if tc.wantErr != nil {
					assert.ErrorIs(t, err, tc.wantErr)
				}
				return
			}
			require.NoError(t, err)
			require.Len(t, got, len(tc.want))
			for i := range got {
				assert.Equal(t, tc.want[i].Marshal(), got[i].Marshal())
			}
		})
	}

	_, err = LoadHostKeys(filepath.Join(t.TempDir(), "missing"), "10.0.10.10:22")
	assert.Error(t, err)
}

// The keyholder may serve the agent on an ipc.Listener (0660 socket, stale
// socket replaced): its connections wrap the Unix socket, and the audit
// lines still carry the caller's credentials.
func TestServeOnIPCListenerKeepsPeerCredentials(t *testing.T) {
	key, host := newSigner(t), newSigner(t)
	logs := &logtest.Buffer{}
	srv, err := New(Config{Key: key, DevvmHostKeys: []ssh.PublicKey{host.PublicKey()}, User: testUser,
		Logger: hclog.New(&hclog.LoggerOptions{Output: logs, JSONFormat: true})})
	require.NoError(t, err)
	l, err := ipc.Listen(filepath.Join(shortTempDir(t), "agent.sock"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l) }()

	c := dialRaw(t, l.Path())
	reply, err := c.roundTrip(signReq(key.PublicKey(), userauthData(sessionID(t, 32), testUser, key.PublicKey(), nil)))
	require.NoError(t, err)
	assert.Equal(t, []byte{msgFailure}, reply)
	cancel()
	require.NoError(t, <-done)

	signs := logs.Where(t, "event", "sign")
	require.Len(t, signs, 1)
	assert.Equal(t, float64(os.Getuid()), signs[0]["uid"])
	assert.Equal(t, float64(os.Getpid()), signs[0]["pid"])
}
