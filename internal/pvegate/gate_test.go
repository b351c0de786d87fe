package pvegate_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/internal/pvegate"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/verbs"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

const qm = "/usr/sbin/qm"

// now is a clock whose pauses end at once, so cycle's polls need no waiting.
func now(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- time.Time{}
	return ch
}

func newGate(t *testing.T, f *fakeRunner, mod func(*pvegate.Config)) *pvegate.Gate {
	t.Helper()
	cfg := pvegate.Config{
		QM:     qm,
		Runner: f,
		FS:     fstest.MapFS{},
		Lock:   pvegate.FileLock{Path: filepath.Join(t.TempDir(), "lock")},
		After:  now,
		RunDir: filepath.Join(t.TempDir(), "run"),
		Serial: filepath.Join(t.TempDir(), "serial0"),
	}
	if mod != nil {
		mod(&cfg)
	}
	g, err := pvegate.New(cfg)
	require.NoError(t, err)
	return g
}

// callBound bounds every gate call of these tests: a gate that does not
// return (a wait with no end, a lock that queues) fails its test in
// seconds instead of hanging it.
const callBound = 5 * time.Second

func run(g *pvegate.Gate, cmd string) (code int, stdout, stderr string) {
	return runWithin(g, cmd, callBound)
}

// runWithin runs cmd with a context that ends after d, and stops waiting
// for it a second later (a call blocked where no context reaches, such as
// flock(2)); it then answers code -1. Either way stderr then ends with a
// line starting "test: ", so a test can tell its own deadline from the
// gate's.
func runWithin(g *pvegate.Gate, cmd string, d time.Duration) (code int, stdout, stderr string) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	type result struct {
		code int
		o, e string
	}
	done := make(chan result, 1)
	go func() {
		var o, e bytes.Buffer
		c := g.Run(ctx, pvegate.Request{Command: cmd, Client: "127.0.0.1 1 127.0.0.1 22"}, &o, &e)
		if ctx.Err() != nil {
			fmt.Fprintf(&e, "test: the test's deadline (%v) ended the call\n", d)
		}
		done <- result{c, o.String(), e.String()}
	}()
	select {
	case r := <-done:
		return r.code, r.o, r.e
	case <-time.After(d + time.Second):
		return -1, "", fmt.Sprintf("test: the gate did not return within %v", d+time.Second)
	}
}

func TestVerbsRunExactlyTheirArgv(t *testing.T) {
	tests := []struct {
		verb string
		want []string
	}{
		{"status", []string{"qm status 102 --verbose"}},
		{"reset", []string{"qm reset 102"}},
		{"stop", []string{"qm stop 102"}},
		{"start", []string{"qm start 102"}},
		{"cycle", []string{"qm stop 102", "qm status 102", "qm start 102"}},
		{"unlock", []string{"qm unlock 102"}},
	}
	for _, tc := range tests {
		t.Run(tc.verb, func(t *testing.T) {
			f := newFakeRunner(qm)
			code, _, stderr := run(newGate(t, f, nil), tc.verb)
			assert.Equal(t, pvegate.ExitOK, code, stderr)
			assert.Equal(t, tc.want, f.argvs())
			for _, c := range f.rawCalls() {
				assert.Equal(t, qm, c.argv[0], "qm is always the configured absolute path")
				assert.Empty(t, c.stdin)
			}
		})
	}
}

func TestVMIDIsConfiguration(t *testing.T) {
	f := newFakeRunner(qm)
	g := newGate(t, f, func(c *pvegate.Config) { c.VMID = 4711 })
	code, _, _ := run(g, "reset")
	assert.Equal(t, pvegate.ExitOK, code)
	assert.Equal(t, []string{"qm reset 4711"}, f.argvs())
	assert.Equal(t, 4711, g.VMID())
}

func TestExitCodeIsQMs(t *testing.T) {
	f := newFakeRunner(qm)
	f.fail["qm start 102"] = pvegate.Result{Output: []byte("VM 102 already running\n"), ExitCode: 255}
	code, out, _ := run(newGate(t, f, nil), "start")
	assert.Equal(t, 255, code)
	assert.Equal(t, "VM 102 already running\n", out)
}

func TestRefusedInputNeverReachesRunner(t *testing.T) {
	for _, in := range []string{"", "status ", "STATUS", "status;reboot", "status && x", "$(id)", "`id`",
		"status\n", "status\x00", "reset 103", "qm reset 102", "stop --skiplock", "../status",
		"\u0455tatus", strings.Repeat("a", 1<<20)} {
		t.Run("", func(t *testing.T) {
			f := newFakeRunner(qm)
			code, stdout, stderr := run(newGate(t, f, nil), in)
			assert.Equal(t, pvegate.ExitRefused, code)
			assert.Empty(t, f.argvs(), "a refused command must never reach qm")
			assert.Empty(t, stdout)
			assert.Equal(t, 1, strings.Count(stderr, "\n"), "one-line reason: %q", stderr)
			assert.True(t, strings.HasPrefix(stderr, "pve-gate: refused: unknown verb"), stderr)
			assert.Contains(t, stderr, "allowed verbs are status, forensics, reset, stop, start, cycle")
			assert.Less(t, len(stderr), 300)
		})
	}
}

func TestEveryCallIsOneLogLine(t *testing.T) {
	var logs bytes.Buffer
	f := newFakeRunner(qm)
	g := newGate(t, f, func(c *pvegate.Config) {
		c.Logger = hclog.New(&hclog.LoggerOptions{Output: &logs, Name: "pve-gate"})
	})
	run(g, "status")
	run(g, "status;reboot\nfake log line")
	lines := strings.Split(strings.TrimSuffix(logs.String(), "\n"), "\n")
	require.Len(t, lines, 2, logs.String())
	assert.Contains(t, lines[0], "verb=status")
	assert.Contains(t, lines[0], "exit=0")
	assert.Contains(t, lines[0], `client="127.0.0.1 1 127.0.0.1 22"`)
	assert.Contains(t, lines[1], "refused")
	assert.Contains(t, lines[1], "exit=2")
}

func TestCycle(t *testing.T) {
	t.Run("waits-for-stopped", func(t *testing.T) {
		f := newFakeRunner(qm)
		f.stopsTo = "running" // qm stop returned but the VM still says running
		polls := 0
		g := newGate(t, f, func(c *pvegate.Config) {
			c.After = func(time.Duration) <-chan time.Time {
				polls++
				if polls == 3 {
					f.mu.Lock()
					f.state = "stopped"
					f.mu.Unlock()
				}
				return now(0)
			}
		})
		code, out, stderr := run(g, "cycle")
		require.Equal(t, pvegate.ExitOK, code, stderr)
		assert.Equal(t, []string{"qm stop 102", "qm status 102", "qm status 102", "qm status 102",
			"qm status 102", "qm start 102"}, f.argvs())
		assert.Contains(t, out, "VM 102 stopped; starting")
	})
	t.Run("never-stopped", func(t *testing.T) {
		f := newFakeRunner(qm)
		f.stopsTo = "running"
		g := newGate(t, f, func(c *pvegate.Config) {
			c.StopWait = 30 * time.Millisecond
			c.After = time.After
			c.PollInterval = time.Millisecond
		})
		// The stop wait, not the test's own bound, must end it.
		code, _, stderr := runWithin(g, "cycle", 2*time.Second)
		assert.Equal(t, pvegate.ExitTimeout, code)
		assert.Contains(t, stderr, "did not say stopped")
		assert.NotContains(t, stderr, "test: ")
		assert.NotContains(t, f.argvs(), "qm start 102", "cycle must never start a VM it has not seen stopped")
	})
	t.Run("cancelled", func(t *testing.T) {
		f := newFakeRunner(qm)
		f.stopsTo = "running"
		ctx, cancel := context.WithCancel(context.Background())
		g := newGate(t, f, func(c *pvegate.Config) {
			c.After = func(time.Duration) <-chan time.Time {
				cancel() // SIGTERM on the host while cycle waits
				return nil
			}
		})
		var o, e bytes.Buffer
		code := g.Run(ctx, pvegate.Request{Command: "cycle"}, &o, &e)
		assert.Equal(t, pvegate.ExitTimeout, code)
		assert.Contains(t, e.String(), "cancelled while waiting for VM 102 to stop; not starting")
		assert.NotContains(t, f.argvs(), "qm start 102")
	})
	t.Run("stop-fails", func(t *testing.T) {
		f := newFakeRunner(qm)
		f.fail["qm stop 102"] = pvegate.Result{Output: []byte("VM is locked (backup)\n"), ExitCode: 255}
		// A short stop wait: a cycle that went on to wait would end at
		// once instead of after the default 25 s.
		code, out, stderr := run(newGate(t, f, func(c *pvegate.Config) { c.StopWait = 50 * time.Millisecond }), "cycle")
		assert.Equal(t, 255, code)
		assert.Equal(t, []string{"qm stop 102"}, f.argvs())
		assert.Contains(t, out, "VM is locked")
		assert.Contains(t, stderr, "not starting")
	})
}

func TestHungCommandIsKilledAtItsTimeout(t *testing.T) {
	f := newFakeRunner(qm)
	f.hang["qm reset 102"] = true
	g := newGate(t, f, func(c *pvegate.Config) { c.CommandTimeout = 20 * time.Millisecond })
	// The command's own timeout must end it, long before the test's.
	code, _, stderr := runWithin(g, "reset", 2*time.Second)
	assert.Equal(t, pvegate.ExitTimeout, code)
	assert.Contains(t, stderr, "qm reset 102: killed after 20ms")
	assert.NotContains(t, stderr, "test: ")
	assert.Equal(t, []string{"qm reset 102"}, f.argvs())
}

// TestGuestExecOffByDefault: without AllowGuestExec the gate refuses
// guest-exec before anything runs, however well formed its argv.
func TestGuestExecOffByDefault(t *testing.T) {
	f := newFakeRunner(qm)
	g := newGate(t, f, nil)
	v, err := verbs.Parse("guest-exec")
	require.NoError(t, err)
	line, err := verbs.EncodeLine(v, []string{"id", "-u"})
	require.NoError(t, err)
	code, out, stderr := run(g, line)
	assert.Equal(t, pvegate.ExitRefused, code)
	assert.Empty(t, out)
	assert.Contains(t, stderr, "guest-exec is off")
	assert.Empty(t, f.argvs())
}

func TestLockContention(t *testing.T) {
	lock := pvegate.FileLock{Path: filepath.Join(t.TempDir(), "pve-gate.lock")}
	holder := newFakeRunner(qm)
	holder.stuck["qm stop 102"] = true
	holder.entered = make(chan string, 1)
	first := newGate(t, holder, func(c *pvegate.Config) { c.Lock = lock })
	release := sync.OnceFunc(func() { close(holder.release) })
	defer release()

	done := make(chan int, 1)
	go func() {
		code, _, _ := runWithin(first, "stop", time.Minute) // held until release
		done <- code
	}()
	require.Equal(t, "qm stop 102", <-holder.entered)

	// A second gate (another key, another session) on the same host lock.
	other := newFakeRunner(qm)
	second := newGate(t, other, func(c *pvegate.Config) { c.Lock = lock })
	for _, verb := range []string{"reset", "stop", "start", "cycle"} {
		ok := t.Run(verb, func(t *testing.T) {
			// Refused at once: a lock that queued would block here.
			code, out, stderr := runWithin(second, verb, 2*time.Second)
			assert.Equal(t, pvegate.ExitBusy, code)
			assert.Empty(t, out)
			assert.Contains(t, stderr, "busy: another mutating verb is running on this host")
		})
		if !ok {
			return // one queued call is enough; the others would queue too
		}
	}
	t.Run("reads-still-run", func(t *testing.T) {
		code, out, _ := run(second, "status")
		assert.Equal(t, pvegate.ExitOK, code)
		assert.Contains(t, out, "status: running")
	})
	assert.Equal(t, []string{"qm status 102 --verbose"}, other.argvs(), "a busy mutating verb runs nothing")

	release()
	assert.Equal(t, pvegate.ExitOK, <-done)
	code, _, stderr := run(second, "reset")
	assert.Equal(t, pvegate.ExitOK, code, "the lock is released when the holder ends: %s", stderr)
}

func TestNewValidates(t *testing.T) {
	tests := []struct {
		name string
		cfg  pvegate.Config
		msg  string
	}{
		{"vmid-low", pvegate.Config{VMID: 99}, "invalid vmid"},
		{"vmid-negative", pvegate.Config{VMID: -1}, "invalid vmid"},
		{"qm-relative", pvegate.Config{QM: "qm"}, "must be absolute"},
		{"qm-unclean", pvegate.Config{QM: "/usr/sbin/../sbin/qm"}, "must be absolute and clean"},
		{"negative-timeout", pvegate.Config{CommandTimeout: -time.Second}, "negative command timeout"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pvegate.New(tc.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.msg)
		})
	}
	g, err := pvegate.New(pvegate.Config{})
	require.NoError(t, err, "the zero Config is the production gate")
	assert.Equal(t, 102, g.VMID())
}

func TestGuestEachCommandBoundedAndReported(t *testing.T) {
	// One guest agent command hangs (a wedged agent) and one fails: the
	// others still answer, each is reported, and the hung one is killed at
	// its own timeout.
	f := newFakeRunner(qm)
	f.hang["qm guest cmd 102 get-fsinfo"] = true
	f.fail["qm guest cmd 102 get-osinfo"] = pvegate.Result{ExitCode: 255, Output: []byte("No QEMU guest agent configured\n")}
	g := newGate(t, f, func(c *pvegate.Config) { c.GuestTimeout = 50 * time.Millisecond })
	code, out, _ := run(g, "guest")
	assert.Equal(t, 127, code, "ping's status (the fake knows no ping)")
	assert.Contains(t, out, "== qm guest cmd 102 get-fsinfo ==\npve-gate: qm guest cmd 102 get-fsinfo: killed after 50ms\n")
	assert.Contains(t, out, "== qm guest cmd 102 get-osinfo ==\nNo QEMU guest agent configured\n(exit 255)\n")
	assert.Contains(t, out, "== qm guest cmd 102 network-get-interfaces ==\n(exit 127)\n")
	assert.ElementsMatch(t, []string{"qm guest cmd 102 ping", "qm guest cmd 102 get-osinfo",
		"qm guest cmd 102 get-fsinfo", "qm guest cmd 102 network-get-interfaces"}, f.argvs())
}

func TestTasksReportsLockWhenPveshFails(t *testing.T) {
	f := newFakeRunner(qm)
	f.fail["/usr/bin/pvesh get /cluster/tasks --output-format json"] = pvegate.Result{ExitCode: 2, Output: []byte("ipcc_send_rec failed\n")}
	code, out, _ := run(newGate(t, f, nil), "tasks")
	assert.Equal(t, 2, code)
	assert.Contains(t, out, "ipcc_send_rec failed\n(pvesh exited 2)\n")
	assert.Contains(t, out, "lock: backup\n!! the VM is locked (backup)")
}

func TestScreenshotTempDirGoneAfterKilledMonitor(t *testing.T) {
	// The monitor hangs after QEMU wrote the dump: it is killed at its
	// timeout and the folder with the dump goes with it.
	f := newFakeRunner(qm)
	f.hang["qm monitor 102"] = true
	runDir := filepath.Join(t.TempDir(), "run")
	g := newGate(t, f, func(c *pvegate.Config) { c.RunDir = runDir; c.SectionTimeout = 50 * time.Millisecond })
	code, out, stderr := run(g, "screenshot")
	assert.Equal(t, pvegate.ExitTimeout, code)
	assert.Empty(t, out)
	assert.Contains(t, stderr, "killed after 50ms")
	calls := f.rawCalls()
	require.Len(t, calls, 1)
	require.True(t, strings.HasPrefix(calls[0].stdin, "screendump "+runDir+"/screendump-"), calls[0].stdin)
	entries, err := os.ReadDir(runDir)
	require.NoError(t, err)
	assert.Empty(t, entries)
}

func TestScreenshotRefusesAnOpenRunDir(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, dir string)
		msg   string
	}{
		{"group-readable", func(t *testing.T, dir string) { require.NoError(t, os.Mkdir(dir, 0o750)) }, "must be 0700"},
		{"symlink", func(t *testing.T, dir string) { require.NoError(t, os.Symlink(t.TempDir(), dir)) }, "not a folder"},
		{"file", func(t *testing.T, dir string) { require.NoError(t, os.WriteFile(dir, nil, 0o600)) }, "not a folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			tc.setup(t, dir)
			f := newFakeRunner(qm)
			code, out, stderr := run(newGate(t, f, func(c *pvegate.Config) { c.RunDir = dir }), "screenshot")
			assert.Equal(t, pvegate.ExitConfig, code)
			assert.Empty(t, out)
			assert.Contains(t, stderr, tc.msg)
			assert.Empty(t, f.argvs(), "QEMU is never asked to write there")
		})
	}
}
