package agenthome

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"breakglass/internal/testing/sshdtest"
)

// TestMain lets the test binary play the web binary: invoked through a
// Dir/bin/ssh symlink, it is the wrapper.
func TestMain(m *testing.M) {
	if filepath.Base(os.Args[0]) == "ssh" {
		os.Exit(SSHMain(os.Args, os.Environ(), os.Stderr))
	}
	os.Exit(m.Run())
}

func baseConfig(t *testing.T) Config {
	return Config{
		Dir:        filepath.Join(t.TempDir(), "agent"),
		DevVMHost:  "127.0.0.1",
		DevVMPort:  2222,
		DevVMUser:  "breakglass",
		SocketDir:  "/run/breakglass-test",
		KnownHosts: "/etc/breakglass/known_hosts",
	}
}

func TestPrepare(t *testing.T) {
	cfg := baseConfig(t)
	p, err := Prepare(cfg)
	require.NoError(t, err)
	exe, err := os.Executable()
	require.NoError(t, err)

	assert.Equal(t, filepath.Join(cfg.Dir, "bin"), p.BinDir)
	assert.Equal(t, filepath.Join(cfg.Dir, "bin", "agent-shell"), p.Shell)
	kh, err := os.ReadFile(p.KnownHosts)
	require.NoError(t, err)
	assert.Empty(t, kh, "a missing known_hosts gives an empty copy: ssh refuses every host")

	for _, name := range []string{"ssh", "pve", "agent-shell"} {
		target, err := os.Readlink(filepath.Join(p.BinDir, name))
		require.NoError(t, err, name)
		assert.Equal(t, exe, target, "%s points at the web binary", name)
	}
	fi, err := os.Stat(p.SSHConfig)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "ssh refuses a config others can write")
	fi, err = os.Stat(cfg.Dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())

	// Idempotent, and a new config takes effect.
	cfg.DevVMPort = 2200
	cfg.Executable = "/usr/local/bin/web"
	cfg.KnownHosts = filepath.Join(t.TempDir(), "known_hosts")
	require.NoError(t, os.WriteFile(cfg.KnownHosts, []byte("[127.0.0.1]:2200 ssh-ed25519 AAAA\n"), 0o600))
	_, err = Prepare(cfg)
	require.NoError(t, err)
	conf, err := os.ReadFile(p.SSHConfig)
	require.NoError(t, err)
	assert.Contains(t, string(conf), "Port 2200\n")
	kh, err = os.ReadFile(p.KnownHosts)
	require.NoError(t, err)
	assert.Equal(t, "[127.0.0.1]:2200 ssh-ed25519 AAAA\n", string(kh))
	target, err := os.Readlink(filepath.Join(p.BinDir, "ssh"))
	require.NoError(t, err)
	assert.Equal(t, "/usr/local/bin/web", target)
}

func TestSSHConfigContent(t *testing.T) {
	cfg := baseConfig(t)
	conf, err := SSHConfig(cfg)
	require.NoError(t, err)
	for _, want := range []string{
		"Host devvm\n",
		"  HostName 127.0.0.1\n",
		"  Port 2222\n",
		"  User breakglass\n",
		"  IdentityAgent /run/breakglass-test/agent.sock\n",
		"  IdentityFile none\n",
		"  StrictHostKeyChecking yes\n",
		"  UserKnownHostsFile " + filepath.Join(cfg.Dir, "known_hosts") + "\n",
		"  ForwardAgent no\n",
		"  BatchMode yes\n",
		"  ConnectTimeout 10\n",
		"  ServerAliveInterval 15\n",
		"  ServerAliveCountMax 3\n",
	} {
		assert.Contains(t, conf, want)
	}
	for _, line := range strings.Split(conf, "\n") {
		if strings.Contains(line, "IdentityFile") && !strings.HasPrefix(line, "#") {
			assert.Equal(t, "  IdentityFile none", line, "no key file is ever named")
		}
		assert.NotContains(t, line, "StrictHostKeyChecking no")
	}
}

// TestConfigInjection: values that would add ssh_config lines or expand
// tokens (a ProxyCommand smuggled in a host name) are refused.
func TestConfigInjection(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"host-newline", func(c *Config) { c.DevVMHost = "10.0.10.10\n  ProxyCommand sh -c id" }},
		{"host-space", func(c *Config) { c.DevVMHost = "10.0.10.10 x" }},
		{"host-empty", func(c *Config) { c.DevVMHost = "" }},
		{"user-percent", func(c *Config) { c.DevVMUser = "%u" }},
		{"user-newline", func(c *Config) { c.DevVMUser = "a\nb" }},
		{"port-zero-after-default", func(c *Config) { c.DevVMPort = -1 }},
		{"port-high", func(c *Config) { c.DevVMPort = 65536 }},
		{"socket-space", func(c *Config) { c.SocketDir = "/run/a b" }},
		{"socket-relative", func(c *Config) { c.SocketDir = "run" }},
		{"known-hosts-tilde", func(c *Config) { c.KnownHosts = "/x/~/k" }},
		{"known-hosts-token", func(c *Config) { c.KnownHosts = "/x/%d/k" }},
		{"dir-relative", func(c *Config) { c.Dir = "agent" }},
		{"dir-empty", func(c *Config) { c.Dir = "" }},
		{"dir-space", func(c *Config) { c.Dir = "/tmp/a b" }},
		{"executable-relative", func(c *Config) { c.Executable = "web" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig(t)
			tc.mod(&cfg)
			_, err := Prepare(cfg)
			assert.ErrorIs(t, err, ErrConfig)
			_, err = os.Stat(cfg.Dir)
			assert.True(t, cfg.Dir == "" || !filepath.IsAbs(cfg.Dir) || errors.Is(err, os.ErrNotExist), "nothing written")
		})
	}
}

func TestZeroConfigRefused(t *testing.T) {
	_, err := Prepare(Config{})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestSSHArgv(t *testing.T) {
	assert.Equal(t, []string{"ssh", "-F", "/a/ssh_config", "devvm", "uptime"}, SSHArgv("/a/ssh_config", []string{"ssh", "devvm", "uptime"}))
	assert.Equal(t, []string{"ssh", "-F", "/a/ssh_config"}, SSHArgv("/a/ssh_config", []string{"ssh"}))
}

func realSSH(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(DefaultRealSSH); err != nil {
		t.Fatalf("OpenSSH client missing at %s: make deps-apt (run by make test) installs openssh-client", DefaultRealSSH)
	}
	return DefaultRealSSH
}

// TestWrapperResolvesDevVM runs the real ssh through the wrapper (this test
// binary invoked as Dir/bin/ssh) and checks `ssh -G devvm`.
func TestWrapperResolvesDevVM(t *testing.T) {
	realSSH(t)
	cfg := baseConfig(t)
	p, err := Prepare(cfg)
	require.NoError(t, err)
	cmd := exec.Command(filepath.Join(p.BinDir, "ssh"), "-G", "devvm")
	cmd.Env = []string{ConfigVar + "=" + p.SSHConfig, "HOME=" + t.TempDir(), "PATH=" + p.BinDir + ":/usr/bin:/bin"}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	got := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, " ")
		got[k] = v
	}
	assert.Equal(t, "127.0.0.1", got["hostname"])
	assert.Equal(t, "2222", got["port"])
	assert.Equal(t, "breakglass", got["user"])
	assert.Equal(t, "/run/breakglass-test/agent.sock", got["identityagent"])
	assert.Equal(t, "true", got["stricthostkeychecking"])
	assert.Equal(t, p.KnownHosts, got["userknownhostsfile"])
	assert.Equal(t, "no", got["forwardagent"])
	assert.Equal(t, "yes", got["batchmode"])
	assert.Equal(t, "10", got["connecttimeout"])
}

func TestWrapperRefusesWithoutConfig(t *testing.T) {
	var sb strings.Builder
	assert.Equal(t, 255, SSHMain([]string{"ssh", "devvm"}, []string{"PATH=/usr/bin", "HOME=/h"}, &sb))
	assert.Contains(t, sb.String(), ConfigVar)
}

// serveAgent serves a plain ssh-agent holding key on sock until the test
// ends.
func serveAgent(t *testing.T, sock string, key ed25519.PrivateKey) {
	t.Helper()
	kr := agent.NewKeyring()
	require.NoError(t, kr.Add(agent.AddedKey{PrivateKey: key}))
	ln, err := net.Listen("unix", sock)
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				_ = agent.ServeAgent(kr, c)
			})
		}
	})
}

// TestWrapperLogsIn: `ssh devvm echo …` through the wrapper reaches a stock
// sshd on loopback with the key held only by the agent at
// SocketDir/agent.sock, and the host key pinned in known_hosts.
func TestWrapperLogsIn(t *testing.T) {
	realSSH(t)
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	sshPub, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	srv := sshdtest.Start(t, sshdtest.Config{AuthorizedKeys: string(ssh.MarshalAuthorizedKey(sshPub))})

	sockDir, err := os.MkdirTemp("", "ah")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	serveAgent(t, filepath.Join(sockDir, "agent.sock"), priv)

	cfg := baseConfig(t)
	cfg.DevVMHost, cfg.DevVMPort, cfg.DevVMUser = srv.Host, srv.Port, srv.User
	cfg.SocketDir = sockDir
	cfg.KnownHosts = srv.WriteKnownHosts(t)
	p, err := Prepare(cfg)
	require.NoError(t, err)

	run := func(knownHosts string) (string, error) {
		if knownHosts != "" {
			cfg.KnownHosts = knownHosts
			_, err := Prepare(cfg)
			require.NoError(t, err)
		}
		cmd := exec.Command(filepath.Join(p.BinDir, "ssh"), "devvm", "echo", "hello-from-devvm")
		cmd.Env = []string{ConfigVar + "=" + p.SSHConfig, "PATH=/usr/bin:/bin"}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("")
	require.NoError(t, err, out)
	assert.Equal(t, "hello-from-devvm\n", out)

	t.Run("wrong-host-key", func(t *testing.T) {
		other := sshdtest.Start(t, sshdtest.Config{})
		kh := filepath.Join(t.TempDir(), "known_hosts")
		line := strings.Replace(other.KnownHostsLine(), ":"+strconv.Itoa(other.Port)+"]", ":"+strconv.Itoa(srv.Port)+"]", 1)
		require.NoError(t, os.WriteFile(kh, []byte(line+"\n"), 0o600))
		out, err := run(kh)
		assert.Error(t, err, "a host key that is not pinned is refused")
		assert.Contains(t, out, "Host key verification failed")
	})
}
