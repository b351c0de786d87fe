package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/testing/sshdtest"
	"breakglass/internal/testing/testbin"
)

// fixture is a complete, valid environment: keys, known_hosts and a socket
// directory (not yet created) in a short temporary directory.
type fixture struct {
	dir      string
	env      map[string]string
	pvePub   ssh.PublicKey
	devvmPub ssh.PublicKey
	// alice is the passkey the operators file enrolls.
	alice *passkey.Authenticator
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	dir, err := os.MkdirTemp("", "khcmd")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pve, pvePub, _ := sshdtest.WriteKey(t, dir)
	devvm, devvmPub, _ := sshdtest.WriteKey(t, dir)
	kh := filepath.Join(dir, "known_hosts")
	lines := knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2200")}, hostKey(t)) + "\n" +
		knownhosts.Line([]string{knownhosts.Normalize("127.0.0.1:2222")}, hostKey(t)) + "\n"
	require.NoError(t, os.WriteFile(kh, []byte(lines), 0o644))
	alice := passkey.New("localhost", "http://localhost:8080")
	ops := filepath.Join(dir, "operators")
	require.NoError(t, os.WriteFile(ops, []byte(alice.Line("alice")+"\n"), 0o644))
	return &fixture{dir: dir, pvePub: pvePub, devvmPub: devvmPub, alice: alice, env: map[string]string{
		envRPID:        "localhost",
		envOrigins:     "http://localhost:8080",
		envOperators:   ops,
		envSocketDir:   filepath.Join(dir, "run"),
		envPVEHost:     "127.0.0.1",
		envPVEPort:     "2200",
		envPVEUser:     "root",
		envPVEKey:      pve,
		envDevVMHost:   "127.0.0.1",
		envDevVMPort:   "2222",
		envDevVMUser:   "breakglass",
		envDevVMKey:    devvm,
		envKnownHosts:  kh,
		envVMID:        "102",
		envVerbTimeout: "5",
	}}
}

func hostKey(t testing.TB) ssh.PublicKey {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	k, err := ssh.NewPublicKey(pub)
	require.NoError(t, err)
	return k
}

func (f *fixture) lookup(name string) (string, bool) {
	v, ok := f.env[name]
	return v, ok
}

func (f *fixture) config(t *testing.T) config {
	t.Helper()
	cfg, err := configFromEnv(f.lookup)
	require.NoError(t, err)
	return cfg
}

func (f *fixture) socket() string { return filepath.Join(f.env[envSocketDir], ipc.SocketName) }

func (f *fixture) agentSocket() string {
	return filepath.Join(f.env[envSocketDir], ipc.AgentSocketName)
}

func TestConfigDefaults(t *testing.T) {
	cfg, err := configFromEnv(func(name string) (string, bool) {
		if name == envRPID {
			return "breakglass.example.com", true
		}
		return "", false
	})
	require.NoError(t, err)
	assert.Equal(t, presence.ModeRequired, cfg.keyholder.Presence, "presence is required unless switched off")
	assert.Equal(t, "/etc/breakglass/operators", cfg.keyholder.OperatorsPath)
	assert.Equal(t, []string{"https://breakglass.example.com"}, cfg.keyholder.Origins)
	assert.False(t, cfg.keyholder.Enroll, "enrollment closed by default")
	assert.Equal(t, "/run/breakglass", cfg.socketDir)
	assert.Equal(t, keyholder.Host{Host: "192.168.1.127", Port: 22, User: "root"}, cfg.keyholder.PVE)
	assert.Equal(t, keyholder.Host{Host: "10.0.10.10", Port: 22, User: "breakglass"}, cfg.keyholder.DevVM)
	assert.Equal(t, "/etc/breakglass/keys/pve", cfg.keyholder.PVEKeyPath)
	assert.Equal(t, "/etc/breakglass/keys/devvm", cfg.keyholder.DevVMKeyPath)
	assert.Equal(t, "/etc/breakglass/known_hosts", cfg.keyholder.KnownHostsPath)
	assert.Equal(t, 102, cfg.keyholder.VMID)
	assert.Equal(t, 120*time.Second, cfg.keyholder.VerbTimeout)
}

func TestConfigRefusesMalformedValues(t *testing.T) {
	cases := []struct{ name, variable, value string }{
		{"port-word", envPVEPort, "ssh"},
		{"port-zero", envPVEPort, "0"},
		{"port-high", envDevVMPort, "65536"},
		{"vmid-small", envVMID, "7"},
		{"vmid-word", envVMID, "102abc"},
		{"timeout-zero", envVerbTimeout, "0"},
		{"timeout-negative", envVerbTimeout, "-5"},
		{"timeout-float", envVerbTimeout, "1.5"},
		{"socket-relative", envSocketDir, "run/breakglass"},
		{"presence-typo", envPresence, "Off"},
		{"presence-no", envPresence, "no"},
		{"no-rp-id", envRPID, ""},
		{"enroll-yes", envEnroll, "yes"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			f.env[c.variable] = c.value
			_, err := configFromEnv(f.lookup)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.variable)
		})
	}
}

func TestRunRefusesToStart(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, f *fixture) string // returns the file the message must name
		want error
	}{
		{"missing-key", func(t *testing.T, f *fixture) string {
			f.env[envPVEKey] = filepath.Join(f.dir, "no-such-key")
			return f.env[envPVEKey]
		}, fs.ErrNotExist},
		{"key-mode-0644", func(t *testing.T, f *fixture) string {
			require.NoError(t, os.Chmod(f.env[envPVEKey], 0o644))
			return f.env[envPVEKey]
		}, keyholder.ErrKeyPermissions},
		{"devvm-key-mode-0640", func(t *testing.T, f *fixture) string {
			require.NoError(t, os.Chmod(f.env[envDevVMKey], 0o640))
			return f.env[envDevVMKey]
		}, keyholder.ErrKeyPermissions},
		{"known-hosts-without-pve", func(t *testing.T, f *fixture) string {
			f.env[envPVEPort] = "22"
			return f.env[envKnownHosts]
		}, keyholder.ErrNoKnownHost},
		{"pve-host-name", func(t *testing.T, f *fixture) string {
			f.env[envPVEHost] = "pve.example"
			return ""
		}, keyholder.ErrHostNotIP},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			file := c.edit(t, f)
			// Refusals come before serving. With a context already
			// ended, a refusal that is missing makes run serve and
			// return nil at once, instead of serving until the test
			// times out.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			err := run(ctx, f.config(t))
			require.Error(t, err)
			assert.ErrorIs(t, err, c.want)
			assert.Contains(t, err.Error(), file)
			_, statErr := os.Lstat(f.socket())
			assert.ErrorIs(t, statErr, fs.ErrNotExist, "no socket was created")
		})
	}
}

func TestRunServesAndStops(t *testing.T) {
	f := newFixture(t)
	var logs bytes.Buffer
	cfg := f.config(t)
	ready := make(chan struct{})
	cfg.logOutput = &lineWatcher{w: &logs, match: `"serving"`, ready: ready}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()
	<-ready
	c := ipc.NewClient(f.socket())
	defer c.Close()
	require.NoError(t, c.Healthz(context.Background()))
	body, _, err := c.Metrics(context.Background())
	require.NoError(t, err)
	assert.NotContains(t, string(body), "go_goroutines", "no runtime collectors to clash with the web's")
	cancel()
	require.NoError(t, <-done)
	_, err = os.Lstat(f.socket())
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// lineWatcher closes ready once a written line contains match.
type lineWatcher struct {
	w     io.Writer
	match string
	ready chan struct{}
	done  bool
}

func (l *lineWatcher) Write(p []byte) (int, error) {
	if !l.done && bytes.Contains(p, []byte(l.match)) {
		l.done = true
		close(l.ready)
	}
	return l.w.Write(p)
}

// binary is the keyholder built once for the tests that exec it.
var binary string

func TestMain(m *testing.M) {
	dir, err := testbin.BuildErr("breakglass/cmd/keyholder")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "keyholder")
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// start execs the binary with f's environment only.
func (f *fixture) start(t testing.TB) (*exec.Cmd, *bufio.Scanner) {
	t.Helper()
	cmd := exec.Command(binary)
	cmd.Env = []string{"PATH=/usr/bin:/bin"}
	for k, v := range f.env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return cmd, bufio.NewScanner(stderr)
}

func TestBinaryRefusesBadKeyFile(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, f *fixture) string
	}{
		{"missing-key", func(t *testing.T, f *fixture) string {
			f.env[envPVEKey] = filepath.Join(f.dir, "absent")
			return f.env[envPVEKey]
		}},
		{"key-mode-0644", func(t *testing.T, f *fixture) string {
			require.NoError(t, os.Chmod(f.env[envPVEKey], 0o644))
			return f.env[envPVEKey]
		}},
		{"known-hosts-without-pve", func(t *testing.T, f *fixture) string {
			f.env[envPVEPort] = "2201"
			return f.env[envKnownHosts]
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t)
			file := c.edit(t, f)
			cmd, stderr := f.start(t)
			var out strings.Builder
			for stderr.Scan() {
				out.WriteString(stderr.Text() + "\n")
				if strings.Contains(stderr.Text(), `"@message":"serving"`) {
					// A missing refusal: stop it rather than wait forever.
					_ = cmd.Process.Kill()
					t.Errorf("the keyholder started serving: %s", stderr.Text())
				}
			}
			err := cmd.Wait()
			var exit *exec.ExitError
			require.True(t, errors.As(err, &exit), "exit status: %v", err)
			assert.Equal(t, 1, exit.ExitCode())
			assert.Contains(t, out.String(), "keyholder: refusing to start")
			assert.Contains(t, out.String(), file, "the message names the file")
		})
	}
}

// waitServing reads the binary's log until its "serving" line, then keeps
// draining it (so the process never blocks on a full pipe) until it closes:
// receive from the returned channel before cmd.Wait.
func waitServing(t testing.TB, stderr *bufio.Scanner) <-chan struct{} {
	t.Helper()
	for stderr.Scan() {
		var line map[string]any
		if json.Unmarshal(stderr.Bytes(), &line) == nil && line["@message"] == "serving" {
			drained := make(chan struct{})
			go func() {
				defer close(drained)
				for stderr.Scan() {
				}
			}()
			return drained
		}
	}
	t.Fatalf("keyholder exited before serving")
	return nil
}

func TestBinarySocketLifecycle(t *testing.T) {
	f := newFixture(t)
	// A stale socket left by a killed keyholder.
	require.NoError(t, os.MkdirAll(f.env[envSocketDir], 0o750))
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.socket(), Net: "unix"})
	require.NoError(t, err)
	stale.SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())

	cmd, stderr := f.start(t)
	drained := waitServing(t, stderr)

	info, err := os.Lstat(f.socket())
	require.NoError(t, err)
	assert.Equal(t, fs.ModeSocket, info.Mode().Type())
	assert.Equal(t, fs.FileMode(0o660), info.Mode().Perm())
	c := ipc.NewClient(f.socket())
	defer c.Close()
	require.NoError(t, c.Healthz(context.Background()), "the stale socket was replaced by a live one")
	assert.Empty(t, tcpListeners(t, cmd.Process.Pid), "no TCP listener in the keyholder")

	// The agent socket, served beside it, lists exactly the devvm key to
	// the real ssh-add.
	info, err = os.Lstat(f.agentSocket())
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o660), info.Mode().Perm())
	list := exec.Command("ssh-add", "-L")
	list.Env = []string{"SSH_AUTH_SOCK=" + f.agentSocket()}
	out, err := list.CombinedOutput()
	require.NoError(t, err, "ssh-add -L: %s", out)
	assert.Equal(t, keyField(t, ssh.MarshalAuthorizedKey(f.devvmPub)), keyField(t, out), "the agent lists the devvm key only")
	assert.NotContains(t, string(out), keyField(t, ssh.MarshalAuthorizedKey(f.pvePub)), "the PVE key is never listed")

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	<-drained
	require.NoError(t, cmd.Wait(), "clean exit on SIGTERM")
	for _, sock := range []string{f.socket(), f.agentSocket()} {
		_, err = os.Lstat(sock)
		assert.ErrorIs(t, err, fs.ErrNotExist, "SIGTERM removes %s", sock)
	}
}

// keyField returns the base64 key of the single authorized_keys line in b.
func keyField(t *testing.T, b []byte) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	require.Len(t, lines, 1, "one key: %s", b)
	fields := strings.Fields(lines[0])
	require.GreaterOrEqual(t, len(fields), 2)
	return fields[1]
}

// tcpListeners returns the listening TCP sockets (inodes) held by pid,
// from /proc: the keyholder must have none.
func tcpListeners(t *testing.T, pid int) []string {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	held := map[string]bool{}
	for _, fd := range fds {
		target, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(target, "socket:[") {
			held[strings.TrimSuffix(strings.TrimPrefix(target, "socket:["), "]")] = true
		}
	}
	require.NotEmpty(t, held, "the process holds its Unix socket at least")
	var out []string
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		require.NoError(t, err)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			// st 0A is LISTEN; field 9 is the inode.
			if len(fields) > 9 && fields[3] == "0A" && held[fields[9]] {
				out = append(out, table+" inode "+fields[9])
			}
		}
	}
	return out
}
