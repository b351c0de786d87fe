package pvesim_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"breakglass/internal/pvegate"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/sshdtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func signer(t *testing.T) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(t, err)
	return s
}

type sim struct {
	srv    *pvesim.Server
	vm     *pvesim.VM
	client ssh.Signer
	host   ssh.Signer
}

func start(t *testing.T, mod func(*pvesim.Config)) *sim {
	t.Helper()
	s := &sim{vm: pvesim.NewVM(102), client: signer(t), host: signer(t)}
	cfg := pvesim.Config{VM: s.vm, AuthorizedKey: s.client.PublicKey(), HostKey: s.host}
	if mod != nil {
		mod(&cfg)
	}
	srv, err := pvesim.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, srv.Close()) })
	s.srv = srv
	return s
}

func (s *sim) dial(t *testing.T) *ssh.Client {
	t.Helper()
	c, err := ssh.Dial("tcp", s.srv.Addr, &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.client)},
		HostKeyCallback: ssh.FixedHostKey(s.host.PublicKey()),
		Timeout:         10 * time.Second,
	})
	require.NoError(t, err)
	t.Cleanup(func() { c.Close() })
	return c
}

// run execs command on a new connection and returns stdout, stderr and the
// exit status.
func (s *sim) run(t *testing.T, command string) (string, string, int) {
	t.Helper()
	c := s.dial(t)
	defer c.Close()
	sess, err := c.NewSession()
	require.NoError(t, err)
	defer sess.Close()
	var o, e bytes.Buffer
	sess.Stdout, sess.Stderr = &o, &e
	err = sess.Run(command)
	code := 0
	var exitErr *ssh.ExitError
	if errors.As(err, &exitErr) {
		code = exitErr.ExitStatus()
	} else {
		require.NoError(t, err)
	}
	return o.String(), e.String(), code
}

func TestVerbsChangeTheVM(t *testing.T) {
	s := start(t, nil)
	steps := []struct {
		verb  string
		calls [][]string
		state string
	}{
		{"status", [][]string{{"qm", "status", "102", "--verbose"}}, pvesim.Running},
		{"stop", [][]string{{"qm", "stop", "102"}}, pvesim.Stopped},
		{"start", [][]string{{"qm", "start", "102"}}, pvesim.Running},
		{"reset", [][]string{{"qm", "reset", "102"}}, pvesim.Running},
		{"cycle", [][]string{{"qm", "stop", "102"}, {"qm", "status", "102"}, {"qm", "start", "102"}}, pvesim.Running},
	}
	for _, st := range steps {
		t.Run(st.verb, func(t *testing.T) {
			s.vm.ResetCalls()
			_, stderr, code := s.run(t, st.verb)
			require.Equal(t, pvegate.ExitOK, code, stderr)
			assert.Equal(t, st.calls, s.vm.Calls())
			assert.Equal(t, st.state, s.vm.State())
			out, _, _ := s.run(t, "status")
			assert.Contains(t, out, "status: "+st.state, "the next status shows it")
		})
	}
	t.Run("qm-errors-pass-through", func(t *testing.T) {
		s.vm.SetState(pvesim.Stopped)
		out, _, code := s.run(t, "reset")
		assert.Equal(t, 255, code)
		assert.Equal(t, "VM 102 not running\n", out)
	})
}

func TestForensics(t *testing.T) {
	s := start(t, nil)
	out, _, code := s.run(t, "forensics")
	require.Equal(t, pvegate.ExitOK, code)
	for _, want := range []string{
		"== qm status 102 --verbose ==\ncpus: 4",
		"== qm config 102 ==\nboot: order=scsi0",
		"pid 4242 (from /var/run/qemu-server/102.pid)",
		"threads: 3, in D (uninterruptible): 0",
		"qm> info cpus\n* CPU #0: thread_id=4243",
		"== pvesm status ==\nName",
		"memory: some avg10=0.00",
		"(no OOM or hung-task messages)",
	} {
		assert.Contains(t, out, want)
	}
	assert.Equal(t, [][]string{{"qm", "status", "102", "--verbose"}, {"qm", "config", "102"},
		{"qm", "monitor", "102"}, {"qm", "monitor", "102"}, {"qm", "monitor", "102"}}, s.vm.Calls())

	s.vm.SetState(pvesim.Stopped)
	out, _, _ = s.run(t, "forensics")
	assert.Contains(t, out, "== qemu process ==\n(section failed: read /var/run/qemu-server/102.pid")
	assert.Contains(t, out, "VM 102 not running")
}

func TestRefusedCommandsNeverReachTheVM(t *testing.T) {
	s := start(t, nil)
	for _, cmd := range []string{"", "status;reboot", "reset 103", "qm reset 102", "$(id)", "STATUS", "status\n"} {
		_, stderr, code := s.run(t, cmd)
		assert.Equal(t, pvegate.ExitRefused, code, "%q", cmd)
		assert.Contains(t, stderr, "pve-gate: refused: unknown verb")
	}
	assert.Empty(t, s.vm.Calls())
}

func TestOnlyTheAuthorizedKeyLogsIn(t *testing.T) {
	s := start(t, nil)
	assert.Zero(t, s.srv.Connections())
	_, err := ssh.Dial("tcp", s.srv.Addr, &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer(t))},
		HostKeyCallback: ssh.FixedHostKey(s.host.PublicKey()),
		Timeout:         10 * time.Second,
	})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "unable to authenticate")
	_, err = ssh.Dial("tcp", s.srv.Addr, &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.Password("")},
		HostKeyCallback: ssh.FixedHostKey(s.host.PublicKey()),
		Timeout:         10 * time.Second,
	})
	require.Error(t, err, "no password login")
	assert.Equal(t, int64(2), s.srv.Connections(), "every accepted TCP connection is counted")
	assert.Empty(t, s.vm.Calls())
}

func TestSessionRefusesAllButExec(t *testing.T) {
	s := start(t, nil)
	c := s.dial(t)
	tgt, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer tgt.Close()

	t.Run("pty", func(t *testing.T) {
		sess, err := c.NewSession()
		require.NoError(t, err)
		defer sess.Close()
		assert.Error(t, sess.RequestPty("xterm", 24, 80, ssh.TerminalModes{}))
	})
	t.Run("agent-forwarding", func(t *testing.T) {
		sess, err := c.NewSession()
		require.NoError(t, err)
		defer sess.Close()
		assert.Error(t, agent.RequestAgentForwarding(sess))
	})
	t.Run("subsystem", func(t *testing.T) {
		sess, err := c.NewSession()
		require.NoError(t, err)
		defer sess.Close()
		assert.Error(t, sess.RequestSubsystem("sftp"))
	})
	t.Run("env", func(t *testing.T) {
		sess, err := c.NewSession()
		require.NoError(t, err)
		defer sess.Close()
		assert.Error(t, sess.Setenv("SSH_ORIGINAL_COMMAND", "reset"))
	})
	t.Run("shell-is-refused-verb", func(t *testing.T) {
		sess, err := c.NewSession()
		require.NoError(t, err)
		defer sess.Close()
		var e bytes.Buffer
		sess.Stderr = &e
		require.NoError(t, sess.Shell())
		var exitErr *ssh.ExitError
		require.ErrorAs(t, sess.Wait(), &exitErr)
		assert.Equal(t, pvegate.ExitRefused, exitErr.ExitStatus())
		assert.Contains(t, e.String(), "refused")
	})
	t.Run("local-forward", func(t *testing.T) {
		_, err := c.Dial("tcp", tgt.Addr().String())
		assert.Error(t, err)
	})
	t.Run("remote-forward", func(t *testing.T) {
		_, err := c.Listen("tcp", "127.0.0.1:0")
		assert.Error(t, err)
	})
	assert.Empty(t, s.vm.Calls())
}

func TestRealSSHClient(t *testing.T) {
	dir := t.TempDir()
	keyPath, pub, _ := sshdtest.WriteKey(t, dir)
	vm := pvesim.NewVM(102)
	srv, err := pvesim.Start(pvesim.Config{VM: vm, AuthorizedKey: pub, HostKey: signer(t)})
	require.NoError(t, err)
	defer srv.Close()
	kh := dir + "/known_hosts"
	require.NoError(t, os.WriteFile(kh, []byte(srv.KnownHostsLine()+"\n"), 0o600))
	_, port, _ := net.SplitHostPort(srv.Addr)
	base := []string{"-F", "/dev/null", "-i", keyPath, "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
		"-o", "BatchMode=yes", "-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes", "-p", port}
	ssh := func(opts []string, command ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		args := append(append(append([]string{}, opts...), base...), append([]string{"root@127.0.0.1"}, command...)...)
		cmd := exec.CommandContext(ctx, "ssh", args...)
		out, err := cmd.CombinedOutput()
		var exitErr *exec.ExitError
		if err != nil && !errors.As(err, &exitErr) {
			t.Fatalf("ssh: %v", err)
		}
		return string(out), cmd.ProcessState.ExitCode()
	}
	out, code := ssh(nil, "status")
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "status: running")
	out, code = ssh([]string{"-tt"}, "status")
	assert.Equal(t, 255, code)
	assert.Contains(t, out, "PTY allocation request failed")
	out, code = ssh([]string{"-W", "127.0.0.1:9"})
	assert.NotEqual(t, 0, code)
	assert.Contains(t, out, "open failed")
}

func TestBlockHoldsCommandsAndLockRefusesSecond(t *testing.T) {
	s := start(t, nil)
	release := s.vm.Block()
	defer release()

	done := make(chan int, 1)
	go func() {
		_, _, code := runNoT(s, "stop")
		done <- code
	}()
	assert.Equal(t, []string{"qm", "stop", "102"}, <-s.vm.Waiting())

	_, stderr, code := s.run(t, "reset")
	assert.Equal(t, pvegate.ExitBusy, code)
	assert.Contains(t, stderr, "busy")

	release()
	assert.Equal(t, pvegate.ExitOK, <-done)
	assert.Equal(t, pvesim.Stopped, s.vm.State())
	assert.Equal(t, [][]string{{"qm", "stop", "102"}}, s.vm.Calls(), "the busy reset never ran")
}

func TestBlockedCommandTimesOut(t *testing.T) {
	s := start(t, func(c *pvesim.Config) { c.CommandTimeout = 50 * time.Millisecond })
	release := s.vm.Block()
	defer release()
	_, stderr, code := s.run(t, "status")
	assert.Equal(t, pvegate.ExitTimeout, code)
	assert.Contains(t, stderr, "killed after 50ms")
}

func TestCloseEndsRunningVerbs(t *testing.T) {
	s := start(t, nil)
	release := s.vm.Block()
	defer release()
	c := s.dial(t)
	sess, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, sess.Start("cycle"))
	<-s.vm.Waiting()
	require.NoError(t, s.srv.Close(), "Close returns while a verb is held")
	assert.Error(t, sess.Wait())
	_, err = net.DialTimeout("tcp", s.srv.Addr, time.Second)
	assert.Error(t, err, "no longer listening")
}

func TestExtraOutput(t *testing.T) {
	s := start(t, nil)
	s.vm.SetExtraOutput(2 << 20)
	out, _, code := s.run(t, "status")
	assert.Equal(t, 0, code)
	assert.Greater(t, len(out), 2<<20)
	assert.True(t, strings.HasPrefix(out, "cpus: 4\n"))
}

func TestConcurrentReads(t *testing.T) {
	s := start(t, nil)
	var wg sync.WaitGroup
	codes := make(chan int, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, code := runNoT(s, "status")
			codes <- code
		}()
	}
	wg.Wait()
	close(codes)
	for c := range codes {
		assert.Equal(t, 0, c)
	}
	assert.Len(t, s.vm.Calls(), 8)
	assert.Equal(t, int64(8), s.srv.Connections())
}

func TestStartValidates(t *testing.T) {
	vm, key, host := pvesim.NewVM(102), signer(t).PublicKey(), signer(t)
	tests := []struct {
		name string
		cfg  pvesim.Config
		msg  string
	}{
		{"no-vm", pvesim.Config{AuthorizedKey: key, HostKey: host}, "no VM"},
		{"no-key", pvesim.Config{VM: vm, HostKey: host}, "no authorized key"},
		{"no-host-key", pvesim.Config{VM: vm, AuthorizedKey: key}, "no host key"},
		{"all-interfaces", pvesim.Config{VM: vm, AuthorizedKey: key, HostKey: host, Addr: "0.0.0.0:0"}, "not a loopback IP"},
		{"name", pvesim.Config{VM: vm, AuthorizedKey: key, HostKey: host, Addr: "localhost:0"}, "not a loopback IP"},
		{"bad-vmid", pvesim.Config{VM: pvesim.NewVM(7), AuthorizedKey: key, HostKey: host}, "invalid vmid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pvesim.Start(tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
}

func TestLockedVMRefusesMutations(t *testing.T) {
	s := start(t, nil)
	s.vm.SetLock("backup")
	for _, verb := range []string{"reset", "stop", "start", "cycle"} {
		out, _, code := s.run(t, verb)
		assert.Equal(t, 255, code, verb)
		assert.Contains(t, out, "VM is locked (backup)", verb)
	}
	assert.Equal(t, pvesim.Running, s.vm.State())
	out, _, _ := s.run(t, "forensics")
	assert.Contains(t, out, "lock: backup\n!! the VM is locked (backup)")
	s.vm.SetLock("")
	_, _, code := s.run(t, "reset")
	assert.Equal(t, 0, code)
}

// BenchmarkStatusRoundTrip measures one status verb over a new SSH
// connection, as the keyholder makes them.
func BenchmarkStatusRoundTrip(b *testing.B) {
	client, host := benchSigner(b), benchSigner(b)
	vm := pvesim.NewVM(102)
	srv, err := pvesim.Start(pvesim.Config{VM: vm, AuthorizedKey: client.PublicKey(), HostKey: host})
	require.NoError(b, err)
	defer srv.Close()
	cfg := &ssh.ClientConfig{
		User:            "root",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(client)},
		HostKeyCallback: ssh.FixedHostKey(host.PublicKey()),
		Timeout:         10 * time.Second,
	}
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		c, err := ssh.Dial("tcp", srv.Addr, cfg)
		require.NoError(b, err)
		sess, err := c.NewSession()
		require.NoError(b, err)
		out, err := sess.Output("status")
		require.NoError(b, err)
		require.Contains(b, string(out), "status: running")
		c.Close()
	}
	b.ReportMetric(float64(time.Since(start).Milliseconds())/float64(b.N), "ms/status")
	b.ReportMetric(float64(srv.Connections())/float64(b.N), "conns/op")
}

func benchSigner(b *testing.B) ssh.Signer {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(b, err)
	s, err := ssh.NewSignerFromKey(priv)
	require.NoError(b, err)
	return s
}

func TestClientDisconnectDoesNotStopCycle(t *testing.T) {
	s := start(t, nil)
	release := s.vm.Block()
	defer release()
	c := s.dial(t)
	sess, err := c.NewSession()
	require.NoError(t, err)
	require.NoError(t, sess.Start("cycle"))
	assert.Equal(t, []string{"qm", "stop", "102"}, <-s.vm.Waiting())
	require.NoError(t, c.Close())
	release()
	require.Eventually(t, func() bool { return len(s.vm.Calls()) == 3 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, [][]string{{"qm", "stop", "102"}, {"qm", "status", "102"}, {"qm", "start", "102"}}, s.vm.Calls())
	assert.Equal(t, pvesim.Running, s.vm.State())
}
