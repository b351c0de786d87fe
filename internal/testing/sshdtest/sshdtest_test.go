package sshdtest

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
)

func TestStartAcceptsAuthorizedKeyWithRealClient(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub, _ := WriteKey(t, dir)
	s := Start(t, Config{AuthorizedKeys: AuthorizedKey(`command="echo forced-$SSH_ORIGINAL_COMMAND"`, pub)})

	assert.Equal(t, "127.0.0.1", s.Host)
	assert.Equal(t, net.JoinHostPort("127.0.0.1", strconv.Itoa(s.Port)), s.Addr)
	assert.Equal(t, ssh.KeyAlgoED25519, s.HostKey.Type())

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	args := append(s.SSHArgs(keyPath, s.WriteKnownHosts(t)), "hello")
	out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
	require.NoError(t, err, "ssh: %s", out)
	assert.Equal(t, "forced-hello\n", string(out))
	assert.Contains(t, s.Log(), "Accepted publickey for "+s.User)
}

func TestStartRefusesOtherKey(t *testing.T) {
	dir := t.TempDir()
	_, pub, _ := WriteKey(t, dir)
	otherPath, _, other := WriteKey(t, dir)
	s := Start(t, Config{AuthorizedKeys: AuthorizedKey("", pub)})

	t.Run("go-client", func(t *testing.T) {
		_, err := ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
			User:            s.User,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(other)},
			HostKeyCallback: ssh.FixedHostKey(s.HostKey),
			Timeout:         10 * time.Second,
		})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "unable to authenticate")
	})
	t.Run("real-client", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append(s.SSHArgs(otherPath, s.WriteKnownHosts(t)), "true")
		out, err := exec.CommandContext(ctx, "ssh", args...).CombinedOutput()
		require.Error(t, err)
		assert.Contains(t, string(out), "Permission denied")
	})
}

func TestRealClientRefusesUnpinnedHostKey(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub, _ := WriteKey(t, dir)
	s := Start(t, Config{AuthorizedKeys: AuthorizedKey(`command="echo ran"`, pub)})
	_, otherHost, _ := WriteKey(t, dir)
	wrong := *s
	wrong.HostKey = otherHost
	kh := wrong.WriteKnownHosts(t)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ssh", append(s.SSHArgs(keyPath, kh), "x")...).CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "HOST IDENTIFICATION HAS CHANGED")
	assert.NotContains(t, string(out), "ran")
}

func TestKnownHostsLineFormat(t *testing.T) {
	dir := t.TempDir()
	_, pub, _ := WriteKey(t, dir)
	s := Start(t, Config{AuthorizedKeys: AuthorizedKey("", pub)})
	line := s.KnownHostsLine()
	assert.True(t, strings.HasPrefix(line, "[127.0.0.1]:"+strconv.Itoa(s.Port)+" ssh-ed25519 AAAA"), line)
	_, hosts, key, _, _, err := ssh.ParseKnownHosts([]byte(line))
	require.NoError(t, err)
	assert.Equal(t, []string{"[127.0.0.1]:" + strconv.Itoa(s.Port)}, hosts)
	assert.Equal(t, s.HostKey.Marshal(), key.Marshal())
}

func TestAuthorizedKey(t *testing.T) {
	_, pub, _ := WriteKey(t, t.TempDir())
	plain := AuthorizedKey("", pub)
	assert.True(t, strings.HasPrefix(plain, "ssh-ed25519 AAAA"))
	assert.NotContains(t, plain, "\n")
	assert.Equal(t, "restrict "+plain, AuthorizedKey("restrict", pub))
}
