package devvmsim

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"
)

const user = "breakglass"

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

type fixture struct {
	srv     *Server
	key     ssh.Signer
	hostKey ssh.Signer
}

func start(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{key: newSigner(t), hostKey: newSigner(t)}
	srv, err := Start(Config{User: user, AuthorizedKey: f.key.PublicKey(), HostKey: f.hostKey})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	f.srv = srv
	return f
}

func (f *fixture) dial(t *testing.T, name string, key ssh.Signer) (*ssh.Client, error) {
	t.Helper()
	return ssh.Dial("tcp", f.srv.Addr, &ssh.ClientConfig{
		User:            name,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(f.hostKey.PublicKey()),
		Timeout:         10 * time.Second,
	})
}

func TestRunsCommandWithOutputAndStatus(t *testing.T) {
	f := start(t)
	c, err := f.dial(t, user, f.key)
	require.NoError(t, err)
	defer c.Close()
	sess, err := c.NewSession()
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	err = sess.Run("echo out; echo err >&2; exit 7")
	var exitErr *ssh.ExitError
	require.ErrorAs(t, err, &exitErr)
	assert.Equal(t, 7, exitErr.ExitStatus())
	assert.Equal(t, "out\n", stdout.String())
	assert.Equal(t, "err\n", stderr.String())
	assert.Equal(t, int64(1), f.srv.Logins())
	assert.Equal(t, "127.0.0.1", f.srv.Host)
	assert.Contains(t, f.srv.KnownHostsLine(), "[127.0.0.1]:")
}

func TestRefusesOtherUsersAndKeys(t *testing.T) {
	f := start(t)
	tests := []struct {
		name string
		user string
		key  ssh.Signer
	}{
		{"other-user", "root", f.key},
		{"other-key", user, newSigner(t)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := f.dial(t, tc.user, tc.key)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "unable to authenticate")
		})
	}
	assert.Zero(t, f.srv.Logins())
}

func TestForwardsTheClientsAgent(t *testing.T) {
	f := start(t)
	c, err := f.dial(t, user, f.key)
	require.NoError(t, err)
	defer c.Close()
	keyring := agent.NewKeyring()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	require.NoError(t, keyring.Add(agent.AddedKey{PrivateKey: priv}))
	held, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	require.NoError(t, agent.ForwardToAgent(c, keyring))
	sess, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, agent.RequestAgentForwarding(sess))
	out, err := sess.CombinedOutput(`test -S "$SSH_AUTH_SOCK" && ssh-add -l`)
	require.NoError(t, err, "output: %s", out)
	assert.Contains(t, string(out), ssh.FingerprintSHA256(held.PublicKey()))
}

func TestCloseEndsRunningCommands(t *testing.T) {
	key, hostKey := newSigner(t), newSigner(t)
	srv, err := Start(Config{User: user, AuthorizedKey: key.PublicKey(), HostKey: hostKey})
	require.NoError(t, err)
	c, err := ssh.Dial("tcp", srv.Addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.FixedHostKey(hostKey.PublicKey()),
	})
	require.NoError(t, err)
	defer c.Close()
	sess, err := c.NewSession()
	require.NoError(t, err)
	stdout, err := sess.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, sess.Start("echo started; exec sleep 600"))
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "started\n", line)

	require.NoError(t, srv.Close())
	err = sess.Wait()
	require.Error(t, err, "the session ends with the server")
	_, err = net.Dial("tcp", srv.Addr)
	assert.Error(t, err)
	assert.NoError(t, srv.Close(), "Close twice is fine")
}

func TestStartRefusesIncompleteConfig(t *testing.T) {
	key := newSigner(t)
	tests := []struct {
		name string
		cfg  Config
		want error
	}{
		{"zero", Config{}, ErrNoUser},
		{"no-key", Config{User: user, HostKey: key}, ErrNoKey},
		{"no-host-key", Config{User: user, AuthorizedKey: key.PublicKey()}, ErrNoHostKey},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Start(tc.cfg)
			assert.ErrorIs(t, err, tc.want)
		})
	}
}

func TestUnreachableWhileReachableSaysNo(t *testing.T) {
	key, hostKey := newSigner(t), newSigner(t)
	var up atomic.Bool
	srv, err := Start(Config{User: user, AuthorizedKey: key.PublicKey(), HostKey: hostKey, Reachable: up.Load})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	f := &fixture{srv: srv, key: key, hostKey: hostKey}

	_, err = f.dial(t, user, key)
	require.Error(t, err, "sshd down: the connection is dropped before the handshake")
	assert.Zero(t, srv.Logins())

	up.Store(true)
	c, err := f.dial(t, user, key)
	require.NoError(t, err)
	c.Close()
}
