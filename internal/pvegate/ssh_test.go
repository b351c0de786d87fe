package pvegate_test

// End to end: the built pve-gate as the forced command of a stock OpenSSH
// sshd, reached by the real ssh client, driving a fake qm that records its
// argv and simulates VM 102.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh/agent"

	"breakglass/internal/pvegate"
	"breakglass/internal/testing/sshdtest"
	"breakglass/internal/testing/testbin"
)

// buildBinaries builds cmd/pve-gate and testdata/fakeqm once per test
// process (TestMain removes them).
func buildBinaries(t *testing.T) (gate, fakeqm string) {
	t.Helper()
	dir := testbin.Build(t, "breakglass/cmd/pve-gate", "breakglass/internal/pvegate/testdata/fakeqm")
	return filepath.Join(dir, "pve-gate"), filepath.Join(dir, "fakeqm")
}

// host is one stock sshd whose authorized_keys sends the test key to
// pve-gate and a fresh fake qm.
type host struct {
	srv        *sshdtest.Server
	key        string
	knownHosts string
	qm         string // this host's copy of the fake qm
	dir        string // the host's folder ($DIR in startHost's flags)
}

func startHost(t *testing.T, flags ...string) *host {
	t.Helper()
	gate, fakeqm := buildBinaries(t)
	dir := t.TempDir()
	qm := filepath.Join(dir, "qm")
	b, err := os.ReadFile(fakeqm)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(qm, b, 0o755))

	keyPath, pub, _ := sshdtest.WriteKey(t, dir)
	command := gate + " --qm " + qm + " --vmid 102 --lock " + filepath.Join(dir, "pve-gate.lock") + " --syslog=false"
	for _, f := range flags {
		command += " " + strings.ReplaceAll(f, "$DIR", dir)
	}
	srv := sshdtest.Start(t, sshdtest.Config{
		AuthorizedKeys: sshdtest.AuthorizedKey(`restrict,command="`+command+`"`, pub),
	})
	return &host{srv: srv, key: keyPath, knownHosts: srv.WriteKnownHosts(t), qm: qm, dir: dir}
}

// sshResult is what one real ssh client run gave.
type sshResult struct {
	stdout, stderr string
	code           int
}

// ssh runs the real ssh client with opts before the destination and the
// remote command words after it.
func (h *host) ssh(t *testing.T, opts []string, command ...string) sshResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := h.sshCmd(ctx, opts, command...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("ssh: %v", err)
	}
	return sshResult{o.String(), e.String(), cmd.ProcessState.ExitCode()}
}

func (h *host) sshCmd(ctx context.Context, opts []string, command ...string) *exec.Cmd {
	args := append(h.srv.SSHArgs(h.key, h.knownHosts, opts...), command...)
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	return cmd
}

// qmRecord is one call the fake qm saw.
type qmRecord struct {
	Argv  []string `json:"argv"`
	Env   []string `json:"env"`
	Stdin string   `json:"stdin"`
}

// calls returns what the fake qm recorded, and forgets it.
func (h *host) calls(t *testing.T) []qmRecord {
	t.Helper()
	f, err := os.Open(h.qm + ".calls")
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	defer f.Close()
	var out []qmRecord
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var r qmRecord
		require.NoError(t, json.Unmarshal(sc.Bytes(), &r))
		out = append(out, r)
	}
	require.NoError(t, os.Remove(h.qm+".calls"))
	return out
}

func (h *host) setState(t *testing.T, state string) {
	t.Helper()
	require.NoError(t, os.WriteFile(h.qm+".state", []byte(state+"\n"), 0o600))
}

func argvs(recs []qmRecord) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = "qm " + strings.Join(r.Argv, " ")
	}
	return out
}

func TestSSHEachVerbRunsItsArgv(t *testing.T) {
	h := startHost(t)
	tests := []struct {
		verb   string
		before string // VM state before the call
		want   []string
		after  string
		out    string
	}{
		{"status", "running", []string{"qm status 102 --verbose"}, "running", "status: running"},
		{"reset", "running", []string{"qm reset 102"}, "running", ""},
		{"stop", "running", []string{"qm stop 102"}, "stopped", ""},
		{"start", "stopped", []string{"qm start 102"}, "running", ""},
		{"cycle", "running", []string{"qm stop 102", "qm status 102", "qm start 102"}, "running", "VM 102 stopped; starting"},
		{"forensics", "running", []string{"qm status 102 --verbose", "qm config 102",
			"qm monitor 102", "qm monitor 102", "qm monitor 102"}, "running", "== qm config 102 ==\nboot: order=scsi0"},
	}
	for _, tc := range tests {
		t.Run(tc.verb, func(t *testing.T) {
			h.setState(t, tc.before)
			res := h.ssh(t, nil, tc.verb)
			require.Equal(t, pvegate.ExitOK, res.code, "stderr: %s", res.stderr)
			assert.Contains(t, res.stdout, tc.out)
			recs := h.calls(t)
			assert.Equal(t, tc.want, argvs(recs))
			for _, r := range recs {
				assert.ElementsMatch(t, pvegate.Env, r.Env, "qm runs with the fixed environment only")
			}
			status := h.ssh(t, nil, "status")
			assert.Contains(t, status.stdout, "status: "+tc.after)
			h.calls(t)
		})
	}
	t.Run("monitor-stdin", func(t *testing.T) {
		h.ssh(t, nil, "forensics")
		var stdins []string
		for _, r := range h.calls(t) {
			if r.Stdin != "" {
				stdins = append(stdins, r.Stdin)
			}
		}
		assert.Equal(t, []string{"info status\nquit\n", "info cpus\nquit\n", "info block\nquit\n"}, stdins)
	})
	t.Run("qm-status-passed-through", func(t *testing.T) {
		h.setState(t, "stopped")
		res := h.ssh(t, nil, "reset")
		assert.Equal(t, 255, res.code)
		assert.Contains(t, res.stdout, "VM 102 not running", "qm's stdout and stderr both come out on stdout")
		h.calls(t)
	})
}

func TestSSHRefusedCommandsNeverReachQM(t *testing.T) {
	h := startHost(t)
	tests := []struct {
		name    string
		command []string
	}{
		{"semicolon", []string{"status;reboot"}},
		{"other-vmid", []string{"reset 103"}},
		{"qm-line", []string{"qm", "reset", "102"}},
		{"subshell", []string{"$(id)"}},
		{"backticks", []string{"`id`"}},
		{"and-and", []string{"status && touch /tmp/pwned"}},
		{"newline", []string{"status\nreset"}},
		{"trailing-space", []string{"status "}},
		{"upper", []string{"STATUS"}},
		{"skiplock", []string{"stop", "--skiplock"}},
		{"empty", nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := h.ssh(t, []string{"-T"}, tc.command...)
			assert.Equal(t, pvegate.ExitRefused, res.code, "stdout %q stderr %q", res.stdout, res.stderr)
			assert.Contains(t, res.stderr, "pve-gate: refused: unknown verb")
			assert.Contains(t, res.stderr, "allowed verbs are status, forensics, reset, stop, start, cycle")
			assert.Empty(t, res.stdout)
			assert.Empty(t, h.calls(t), "a refused command must never reach qm")
		})
	}
}

func TestSSHRestrictRefusesPty(t *testing.T) {
	h := startHost(t)
	// -tt: ask for a pty even though the test's stdin is not a terminal;
	// forced, so the client gives up when sshd refuses it.
	res := h.ssh(t, []string{"-tt"}, "status")
	assert.Contains(t, res.stderr, "PTY allocation request failed")
	assert.Equal(t, 255, res.code)
	assert.Contains(t, h.srv.Log(), "Allocating a pty not permitted for this connection", "sshd refused it")
	assert.Regexp(t, `active: key options: command\r?\n`, h.srv.Log(), "restrict leaves only the forced command")
}

// target is a loopback listener that counts connections reaching it.
func target(t *testing.T) (addr string, accepted *atomic.Int64) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	accepted = &atomic.Int64{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return l.Addr().String(), accepted
}

func TestSSHRestrictRefusesPortForwarding(t *testing.T) {
	h := startHost(t)
	tgt, accepted := target(t)

	t.Run("stdio-forward", func(t *testing.T) {
		res := h.ssh(t, []string{"-W", tgt})
		assert.NotEqual(t, 0, res.code)
		assert.Contains(t, res.stderr, "administratively prohibited")
	})
	t.Run("remote-forward", func(t *testing.T) {
		res := h.ssh(t, []string{"-N", "-o", "ExitOnForwardFailure=yes", "-R", "127.0.0.1:0:" + tgt})
		assert.NotEqual(t, 0, res.code)
		assert.Contains(t, res.stderr, "remote port forwarding failed")
	})
	t.Run("local-forward", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		local := l.Addr().String()
		require.NoError(t, l.Close())

		ctx, cancel := context.WithCancel(context.Background())
		cmd := h.sshCmd(ctx, []string{"-N", "-o", "ExitOnForwardFailure=yes", "-L", local + ":" + tgt})
		var stderr syncBuffer
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		waited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(waited) }()
		defer func() { cancel(); <-waited }()

		// The client listens once it is logged in; poll for it.
		var conn net.Conn
		deadline := time.Now().Add(20 * time.Second)
		for conn == nil {
			select {
			case <-waited:
				t.Fatalf("ssh -L exited early: %s", stderr.String())
			default:
			}
			conn, err = net.DialTimeout("tcp", local, time.Second)
			if err != nil {
				require.True(t, time.Now().Before(deadline), "ssh -L never listened: %s", stderr.String())
				conn = nil
				<-time.After(20 * time.Millisecond)
			}
		}
		defer conn.Close()
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(20*time.Second)))
		n, err := conn.Read(make([]byte, 1))
		assert.Equal(t, 0, n)
		assert.ErrorIs(t, err, io.EOF, "sshd refuses the channel, so the client closes the forwarded connection")
		assert.Eventually(t, func() bool { return strings.Contains(stderr.String(), "administratively prohibited") },
			10*time.Second, 20*time.Millisecond, "stderr: %s", stderr.String())
	})
	assert.Zero(t, accepted.Load(), "no forwarded connection reached the target")
	assert.Empty(t, h.calls(t), "forwarding alone never runs qm")
}

// serveAgent serves an empty agent on a new socket and counts connections.
func serveAgent(t *testing.T) (sock string, served *atomic.Int64) {
	t.Helper()
	sock = filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	require.NoError(t, err)
	served = &atomic.Int64{}
	keyring := agent.NewKeyring()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			served.Add(1)
			_ = agent.ServeAgent(keyring, c)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close(); <-done })
	return sock, served
}

func TestSSHRestrictRefusesAgentForwarding(t *testing.T) {
	sock, _ := serveAgent(t)
	forward := []string{"-v", "-A", "-o", "IdentityAgent=" + sock}

	t.Run("control", func(t *testing.T) {
		// The same client options against a key without restrict do
		// forward the agent, so the check below can fail.
		dir := t.TempDir()
		key, pub, _ := sshdtest.WriteKey(t, dir)
		srv := sshdtest.Start(t, sshdtest.Config{AuthorizedKeys: sshdtest.AuthorizedKey(`command="env"`, pub)})
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ssh", append(srv.SSHArgs(key, srv.WriteKnownHosts(t), forward...), "x")...).Output()
		require.NoError(t, err)
		assert.Contains(t, string(out), "SSH_AUTH_SOCK=")
	})
	t.Run("restrict", func(t *testing.T) {
		h := startHost(t)
		res := h.ssh(t, forward, "status")
		require.Equal(t, pvegate.ExitOK, res.code, res.stderr)
		assert.Contains(t, res.stderr, "Requesting authentication agent forwarding", "the client did ask")
		assert.Contains(t, h.srv.Log(), "session_auth_agent_req: agent forwarding disabled", "sshd refused it")
	})
}

func TestSSHLockSerialisesAcrossSessions(t *testing.T) {
	h := startHost(t)
	entered, release := h.qm+".entered", h.qm+".release"
	require.NoError(t, syscall.Mkfifo(entered, 0o600))
	require.NoError(t, syscall.Mkfifo(release, 0o600))
	require.NoError(t, os.WriteFile(h.qm+".hold", nil, 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	first := h.sshCmd(ctx, nil, "stop")
	var firstErr bytes.Buffer
	first.Stderr = &firstErr
	require.NoError(t, first.Start())
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Wait() }()

	// Block until the fake qm is inside `qm stop`, holding the host lock.
	withTimeout(t, func() {
		b, err := os.ReadFile(entered)
		require.NoError(t, err)
		require.Equal(t, "x", string(b))
	})

	for _, verb := range []string{"reset", "cycle", "start", "stop"} {
		res := h.ssh(t, nil, verb)
		assert.Equal(t, pvegate.ExitBusy, res.code, verb)
		assert.Contains(t, res.stderr, "busy: another mutating verb is running on this host", verb)
	}
	status := h.ssh(t, nil, "status")
	assert.Equal(t, pvegate.ExitOK, status.code, "reads are not locked out")

	withTimeout(t, func() {
		f, err := os.OpenFile(release, os.O_WRONLY, 0)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	})
	require.NoError(t, <-firstDone, firstErr.String())
	assert.Equal(t, []string{"qm stop 102", "qm status 102 --verbose"}, argvs(h.calls(t)),
		"the busy verbs never reached qm")
	require.NoError(t, os.Remove(h.qm+".hold"))
	res := h.ssh(t, nil, "start")
	assert.Equal(t, pvegate.ExitOK, res.code, "the lock died with the first session: %s", res.stderr)
}

// withTimeout runs f (which may block on a FIFO) and fails the test if it
// does not return within 30s.
func withTimeout(t *testing.T, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); f() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("blocked for 30s on the fake qm's FIFO")
	}
}

// syncBuffer is a bytes.Buffer safe for a process's writer and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestSSHClientDisconnectDoesNotStopCycle(t *testing.T) {
	// A keyholder timeout or a dropped network closes the session while
	// cycle is between stop and start; the VM must not be left off.
	h := startHost(t)
	entered, release := h.qm+".entered", h.qm+".release"
	require.NoError(t, syscall.Mkfifo(entered, 0o600))
	require.NoError(t, syscall.Mkfifo(release, 0o600))
	require.NoError(t, os.WriteFile(h.qm+".hold", nil, 0o600))

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	client := h.sshCmd(ctx, nil, "cycle")
	require.NoError(t, client.Start())
	waited := make(chan struct{})
	go func() { _ = client.Wait(); close(waited) }()
	withTimeout(t, func() {
		_, err := os.ReadFile(entered)
		require.NoError(t, err)
	})

	require.NoError(t, client.Process.Kill())
	<-waited
	require.Eventually(t, func() bool { return strings.Contains(h.srv.Log(), "Connection closed by 127.0.0.1") },
		20*time.Second, 10*time.Millisecond, "sshd saw the client go")

	withTimeout(t, func() {
		f, err := os.OpenFile(release, os.O_WRONLY, 0)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	})
	// pve-gate now writes to a closed session and must carry on.
	var got []string
	require.Eventually(t, func() bool {
		b, _ := os.ReadFile(h.qm + ".calls")
		return strings.Contains(string(b), `"argv":["start","102"]`)
	}, 30*time.Second, 20*time.Millisecond, "qm start never ran after the client went away")
	got = argvs(h.calls(t))
	assert.Equal(t, []string{"qm stop 102", "qm status 102", "qm start 102"}, got)
	b, err := os.ReadFile(h.qm + ".state")
	require.NoError(t, err)
	assert.Equal(t, "running\n", string(b))
}
