package sshagent

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/testing/sshdtest"
)

// These tests drive the real OpenSSH client (Debian's /usr/bin/ssh), which
// sends session-bind@openssh.com to the agent after key exchange.

func TestOpenSSHLogsInToDevvmThroughAgent(t *testing.T) {
	w := startDevvmWorld(t)
	out, err := sshLogin{
		agentSock:  w.agent.sock,
		knownHosts: w.knownHosts,
		port:       w.devvm.Port,
		user:       testUser,
		command:    "echo hello from $USER; exit 3",
	}.run(t)

	var exitErr interface{ ExitCode() int }
	require.ErrorAs(t, err, &exitErr, "output: %s", out)
	assert.Equal(t, 3, exitErr.ExitCode(), "the remote exit status comes back; output: %s", out)
	assert.Contains(t, out, "hello from breakglass")
	assert.Equal(t, int64(1), w.devvm.Logins())
	assert.Equal(t, []string{"bound"}, outcomes(t, w.agent.logs, "bind"))
	signs := w.agent.logs.Where(t, "event", "sign")
	require.Len(t, signs, 1)
	assert.Equal(t, "signed", signs[0]["outcome"])
	assert.Equal(t, testUser, signs[0]["user"])
	assert.Equal(t, methodPublicKey, signs[0]["method"])
	assert.Equal(t, ssh.FingerprintSHA256(w.hostKey.PublicKey()), signs[0]["host_key"])
}

func TestOpenSSHRefusals(t *testing.T) {
	tests := []struct {
		name string
		desc string
		// login returns the client run and the server whose login counter
		// must stay at zero.
		login   func(t *testing.T, w *devvmWorld) (sshLogin, interface{ Logins() int64 })
		outcome string
	}{
		{
			name: "wrong-host",
			desc: "client accepts any host key; the server has another host key and lets the devvm key in",
			login: func(t *testing.T, w *devvmWorld) (sshLogin, interface{ Logins() int64 }) {
				other := startDevvm(t, testUser, w.devvmKey.PublicKey(), newSigner(t))
				return sshLogin{agentSock: w.agent.sock, port: other.Port, user: testUser, command: "true"}, other
			},
			outcome: "wrong_host",
		},
		{
			name: "wrong-user",
			desc: "the pinned host key, a server that lets another user in with the devvm key",
			login: func(t *testing.T, w *devvmWorld) (sshLogin, interface{ Logins() int64 }) {
				other := startDevvm(t, "mallory", w.devvmKey.PublicKey(), w.hostKey)
				kh := writeKnownHosts(t, other.KnownHostsLine())
				return sshLogin{agentSock: w.agent.sock, knownHosts: kh, port: other.Port, user: "mallory", command: "true"}, other
			},
			outcome: "wrong_user",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := startDevvmWorld(t)
			login, server := tc.login(t, w)
			out, err := login.run(t)
			require.Error(t, err, "login must fail; output: %s", out)
			assert.Contains(t, out, "Permission denied")
			assert.Zero(t, server.Logins())
			assert.Equal(t, []string{tc.outcome}, outcomes(t, w.agent.logs, "sign"))
		})
	}
}

func TestOpenSSHForwardedAgentCannotSign(t *testing.T) {
	w := startDevvmWorld(t)
	// On the "devvm", an inner ssh uses the forwarded agent to log in onward
	// (to the devvm double itself, whose key the agent would otherwise sign
	// for). The outer client binds the forwarded channel with
	// is_forwarding=1.
	inner := strings.Join([]string{
		"ssh", "-F", "/dev/null", "-o", "IdentityFile=none", "-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
		"-p", strconv.Itoa(w.devvm.Port), testUser + "@127.0.0.1", "echo inner-login-ok",
	}, " ")
	out, err := sshLogin{
		agentSock:  w.agent.sock,
		knownHosts: w.knownHosts,
		port:       w.devvm.Port,
		user:       testUser,
		extra:      []string{"-A"},
		command:    `test -S "$SSH_AUTH_SOCK" || { echo no forwarded agent; exit 9; }; ` + inner,
	}.run(t)
	require.Error(t, err, "the onward login must fail; output: %s", out)
	assert.NotContains(t, out, "no forwarded agent")
	assert.NotContains(t, out, "inner-login-ok")
	assert.Contains(t, out, "Permission denied")
	assert.Equal(t, int64(1), w.devvm.Logins(), "only the outer login")
	assert.Equal(t, []string{"signed", "forwarding"}, outcomes(t, w.agent.logs, "sign"))
	assert.Contains(t, outcomes(t, w.agent.logs, "bind"), "forwarding")
}

func TestOpenSSHLogsInToStockSSHDWithHostboundMethod(t *testing.T) {
	_, devvmPub, devvmKey := writeKeyFile(t)
	sshd := sshdtest.Start(t, sshdtest.Config{AuthorizedKeys: sshdtest.AuthorizedKey("", devvmPub)})
	a := startAgent(t, Config{Key: devvmKey, DevvmHostKeys: []ssh.PublicKey{sshd.HostKey}, User: sshd.User})
	out, err := sshLogin{
		agentSock:  a.sock,
		knownHosts: sshd.WriteKnownHosts(t),
		port:       sshd.Port,
		user:       sshd.User,
		command:    "echo stock-sshd-ok",
	}.run(t)
	require.NoError(t, err, "output: %s", out)
	assert.Contains(t, out, "stock-sshd-ok")
	signs := a.logs.Where(t, "event", "sign")
	require.Len(t, signs, 1)
	assert.Equal(t, "signed", signs[0]["outcome"])
	assert.Equal(t, methodHostBound, signs[0]["method"])
}
