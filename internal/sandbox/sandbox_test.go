package sandbox

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// The test binary plays every part, chosen by the name it runs as (as the
// web binary does): "launcher" is Main, ShellName is ShellMain, "probe"
// tries one thing and says whether it worked.
func TestMain(m *testing.M) {
	switch filepath.Base(os.Args[0]) {
	case "launcher":
		os.Exit(Main(append([]string{os.Args[0], Subcommand, "--"}, os.Args[1:]...), os.Environ(), os.Stderr))
	case ShellName:
		os.Exit(ShellMain(os.Args, os.Environ(), os.Stderr))
	case "probe":
		os.Exit(probe(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// probe runs attempts, each given as one JSON array argument
// (["read","/etc/passwd"]), and prints one line per attempt: "ok" or
// "denied: <error>". One process runs them all: a sandboxed start costs.
func probe(args []string) int {
	for _, a := range args {
		var op []string
		if err := json.Unmarshal([]byte(a), &op); err != nil || len(op) == 0 {
			fmt.Printf("bad probe %q\n", a)
			return 2
		}
		if op[0] == "child" {
			if err := child(op[1:]); err != nil {
				fmt.Printf("child: %v\n", err)
				return 1
			}
			continue
		}
		if err := attempt(op[0], op[1:]); err != nil {
			fmt.Printf("denied: %v\n", strings.ReplaceAll(err.Error(), "\n", " "))
		} else {
			fmt.Println("ok")
		}
	}
	return 0
}

// child runs a probe in a child, args[0] saying how: "nested" (through
// ShellName, as the CLI runs a Bash tool command) or "direct" (bash -c in
// this process's own domain); the rest are its attempts, in which
// "PARENT" stands for this process's pid. The child's lines are copied.
func child(args []string) error {
	self := strconv.Itoa(os.Getpid())
	cmd := filepath.Join(filepath.Dir(os.Args[0]), "probe")
	for _, a := range args[1:] {
		cmd += " '" + strings.ReplaceAll(a, "PARENT", self) + "'"
	}
	var c *exec.Cmd
	if args[0] == "nested" {
		c = exec.Command(filepath.Join(filepath.Dir(os.Args[0]), ShellName), cmd)
	} else {
		c = exec.Command(Shell, "-c", cmd)
	}
	c.Stdout = os.Stdout
	c.Stderr = os.Stderr
	return c.Run()
}

func attempt(op string, args []string) error {
	arg := func(i int) string {
		if i < len(args) {
			return args[i]
		}
		return ""
	}
	switch op {
	case "read":
		_, err := os.ReadFile(arg(0))
		return err
	case "list":
		_, err := os.ReadDir(arg(0))
		return err
	case "write":
		return os.WriteFile(arg(0), []byte("x"), 0o600)
	case "exec":
		return exec.Command(arg(0), args[1:]...).Run()
	case "connect", "connect-mptcp":
		proto := 0
		if op == "connect-mptcp" {
			proto = unix.IPPROTO_MPTCP
		}
		port, _ := strconv.Atoi(arg(0))
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, proto)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Connect(fd, &unix.SockaddrInet4{Port: port, Addr: [4]byte{127, 0, 0, 1}})
	case "bind":
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}})
	case "environ":
		_, err := os.ReadFile("/proc/" + arg(0) + "/environ")
		return err
	case "procfd":
		f, err := os.OpenFile("/proc/"+arg(0)+"/fd/0", os.O_WRONLY, 0)
		if err == nil {
			f.Close()
		}
		return err
	case "ptrace":
		pid, _ := strconv.Atoi(arg(0))
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := syscall.PtraceAttach(pid); err != nil {
			return err
		}
		var ws syscall.WaitStatus
		_, _ = syscall.Wait4(pid, &ws, syscall.WALL, nil)
		return syscall.PtraceDetach(pid)
	case "signal":
		pid, _ := strconv.Atoi(arg(0))
		return syscall.Kill(pid, syscall.SIGCONT)
	}
	return fmt.Errorf("unknown probe %q", op)
}

// world is a launcher with its folders: two sessions' folders and a
// file of the web's, all owned by the user the probes run as, so only
// Landlock stands between them.
type world struct {
	exe    string // a copy of the test binary the probes can execute
	bin    string // folder with the launcher, shell and probe names
	work   string // this session's work folder
	other  string // another session's work folder
	secret string // a file of the web's
	uid    int    // the probes' user (not root)
}

// agentUID is the user the probes run as when the tests run as root.
const agentUID = 65534

func newWorld(t *testing.T) world {
	t.Helper()
	exe, err := os.Executable()
	require.NoError(t, err)
	root := t.TempDir()
	w := world{
		exe:    filepath.Join(root, "sandbox.test"),
		bin:    filepath.Join(root, "bin"),
		work:   filepath.Join(root, "sessions", "a", "work"),
		other:  filepath.Join(root, "sessions", "b", "work"),
		secret: filepath.Join(root, "sessions", "a", "events.jsonl"),
		uid:    os.Geteuid(),
	}
	for _, d := range []string{w.bin, w.work, w.other} {
		require.NoError(t, os.MkdirAll(d, 0o755))
	}
	b, err := os.ReadFile(exe)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(w.exe, b, 0o755))
	for _, name := range []string{"launcher", ShellName, "probe"} {
		require.NoError(t, os.Symlink(w.exe, filepath.Join(w.bin, name)))
	}
	require.NoError(t, os.WriteFile(w.secret, []byte("secret"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(w.other, "notes"), []byte("other"), 0o600))
	if w.uid == 0 {
		w.uid = agentUID
		require.NoError(t, os.Chmod(filepath.Dir(root), 0o755))
		require.NoError(t, filepath.WalkDir(root, func(path string, _ os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			return os.Lchown(path, agentUID, agentUID)
		}))
	}
	return w
}

// asUser runs a process as the world's user.
func (w world) asUser() *syscall.SysProcAttr {
	if os.Geteuid() != 0 {
		return nil
	}
	return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(w.uid), Gid: uint32(w.uid)}}
}

func (w world) policy(ports ...uint16) Policy {
	return Policy{
		ReadExec:   append(append([]string{}, DefaultSystemDirs...), w.exe, w.bin),
		ReadOnly:   append(append([]string{}, DefaultEtcFiles...), DefaultProcFS...),
		ReadWrite:  []string{w.work},
		Devices:    DefaultDevices,
		ConnectTCP: ports,
	}
}

// run runs attempts in one probe under the launcher with policy p, as a
// user that is not root (Landlock does not keep root out of another
// process's /proc/<pid>/environ), and returns one line per attempt ("ok"
// or "denied: …").
func (w world) run(t *testing.T, p Policy, attempts ...[]string) []string {
	t.Helper()
	return w.runLines(t, p, len(attempts), attempts...)
}

// runLines is run for attempts that print want lines in all.
func (w world) runLines(t *testing.T, p Policy, want int, attempts ...[]string) []string {
	t.Helper()
	enc, err := p.Encode()
	require.NoError(t, err)
	args := []string{filepath.Join(w.bin, "probe")}
	for _, a := range attempts {
		b, _ := json.Marshal(a)
		args = append(args, string(b))
	}
	cmd := exec.Command(filepath.Join(w.bin, "launcher"), args...)
	cmd.Env = []string{PolicyVar + "=" + enc, "PATH=/usr/bin:/bin"}
	cmd.Dir = w.work
	cmd.SysProcAttr = w.asUser()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	require.Len(t, lines, want, "%s", out)
	return lines
}

// one runs a single attempt.
func (w world) one(t *testing.T, p Policy, attempt ...string) string {
	t.Helper()
	return w.run(t, p, attempt)[0]
}

// listener accepts on 127.0.0.1 and returns its port.
func listener(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func requireLandlock(t *testing.T, abi int) {
	t.Helper()
	if k := KernelABI(); k < abi {
		t.Skipf("kernel Landlock ABI %d < %d", k, abi)
	}
}

func TestLauncherConfines(t *testing.T) {
	requireLandlock(t, FullABI)
	w := newWorld(t)
	allowed, other := listener(t), listener(t)
	p := w.policy(allowed)
	cases := []struct {
		name  string
		probe []string
		ok    bool
	}{
		{"write-own-work", []string{"write", filepath.Join(w.work, "out.txt")}, true},
		{"read-named-etc", []string{"read", "/etc/passwd"}, true},
		{"run-system-binary", []string{"exec", "/bin/true"}, true},
		{"connect-allowed-port", []string{"connect", fmt.Sprint(allowed)}, true},
		{"read-web-file", []string{"read", w.secret}, false},
		{"write-next-to-events", []string{"write", filepath.Join(filepath.Dir(w.secret), "forged")}, false},
		{"read-other-session", []string{"read", filepath.Join(w.other, "notes")}, false},
		{"write-other-session", []string{"write", filepath.Join(w.other, "planted")}, false},
		{"list-etc", []string{"list", "/etc"}, false},
		{"read-unnamed-etc", []string{"read", "/etc/debian_version"}, false},
		{"write-tmp", []string{"write", "/tmp/breakglass-sandbox-probe"}, false},
		{"connect-other-port", []string{"connect", fmt.Sprint(other)}, false},
		{"bind", []string{"bind"}, false},
		{"connect-other-port-mptcp", []string{"connect-mptcp", fmt.Sprint(other)}, false},
		{"read-init-environ", []string{"environ", "1"}, false},
	}
	var attempts [][]string
	for _, tc := range cases {
		attempts = append(attempts, tc.probe)
	}
	got := w.run(t, p, attempts...)
	for i, tc := range cases {
		if tc.ok {
			assert.Equal(t, "ok", got[i], tc.name)
		} else {
			assert.True(t, strings.HasPrefix(got[i], "denied:"), "%s: got %q", tc.name, got[i])
		}
	}
	_, err := os.Stat(filepath.Join(w.other, "planted"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestNestedShellCannotReachTheCLI: a process in the launcher's domain
// (standing in for the claude CLI) runs a command through ShellName; the
// command cannot read its environment, open its stdin through /proc,
// ptrace it or signal it. The same command run straight from the CLI's
// own domain can: that is why the nested domain exists.
func TestNestedShellCannotReachTheCLI(t *testing.T) {
	requireLandlock(t, FullABI)
	w := newWorld(t)
	p := w.policy()
	attacks := []string{"environ", "procfd", "ptrace", "signal"}
	nested, direct := []string{"child", "nested"}, []string{"child", "direct"}
	for _, a := range attacks {
		b, _ := json.Marshal([]string{a, "PARENT"})
		nested = append(nested, string(b))
		direct = append(direct, string(b))
	}
	got := w.runLines(t, p, len(attacks), nested)
	for i, a := range attacks {
		assert.True(t, strings.HasPrefix(got[i], "denied:"), "nested %s: got %q", a, got[i])
	}
	got = w.runLines(t, p, len(attacks), direct)
	for i, a := range attacks {
		if a == "ptrace" && yamaRestrictsPtrace() {
			continue // Yama, not Landlock, would refuse the control
		}
		assert.Equal(t, "ok", got[i], "%s from the CLI's own domain works (the control)", a)
	}
}

// yamaRestrictsPtrace reports whether Yama forbids attaching to a process
// that is not a descendant (ptrace_scope above 0).
func yamaRestrictsPtrace() bool {
	b, err := os.ReadFile("/proc/sys/kernel/yama/ptrace_scope")
	return err == nil && strings.TrimSpace(string(b)) != "0"
}

// TestDowngrade forces lower ABIs: what the kernel (here, the cap) lacks
// is not enforced, and Probe says so.
func TestDowngrade(t *testing.T) {
	requireLandlock(t, FullABI)
	w := newWorld(t)
	allowed, other := listener(t), listener(t)

	p := w.policy(allowed) // a port rule, which ABI 3 cannot have
	p.MaxABI = 3
	got := w.run(t, p, []string{"connect", fmt.Sprint(other)}, []string{"read", w.secret})
	assert.Equal(t, "ok", got[0], "ABI 3 has no network rules")
	assert.True(t, strings.HasPrefix(got[1], "denied:"), "ABI 3 still confines files")
	st := Probe(3)
	assert.Equal(t, LevelPartial, st.Level)
	assert.Equal(t, 3, st.ABI)
	assert.Contains(t, st.String(), "TCP connect")

	p.MaxABI = NoLandlock
	assert.Equal(t, "ok", w.one(t, p, "read", w.secret), "no Landlock: nothing confined")
	st = Probe(NoLandlock)
	assert.Equal(t, LevelMissing, st.Level)
	assert.Equal(t, 0, st.ABI)
	assert.Contains(t, st.String(), "NOT confined")

	// Every level runs the program with the full policy (a rule the level
	// cannot hold is left out, never fatal).
	for abi := 1; abi <= LatestABI; abi++ {
		p.MaxABI = abi
		assert.Equal(t, []string{"ok", "ok"}, w.run(t, p, []string{"read", "/etc/passwd"}, []string{"write", filepath.Join(w.work, "f")}), "ABI %d", abi)
	}

	assert.Equal(t, LevelFull, Probe(0).Level)
	assert.Equal(t, min(KernelABI(), LatestABI), Probe(0).ABI)
}

func TestStatusFor(t *testing.T) {
	for _, tc := range []struct {
		name           string
		kernel, maxABI int
		abi            int
		level          Level
		missing        int
	}{
		{"no-kernel-support", 0, 0, 0, LevelMissing, 6},
		{"v1", 1, 0, 1, LevelPartial, 5},
		{"v3-no-network", 3, 0, 3, LevelPartial, 3},
		{"v5-no-scope", 5, 0, 5, LevelPartial, 1},
		{"v6-full", 6, 0, 6, LevelFull, 0},
		{"v9-capped-to-latest", 9, 0, LatestABI, LevelFull, 0},
		{"capped", 7, 4, 4, LevelPartial, 2},
		{"cap-above-kernel", 2, 7, 2, LevelPartial, 4},
		{"forced-off", 7, NoLandlock, 0, LevelMissing, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := statusFor(tc.kernel, tc.maxABI)
			assert.Equal(t, tc.abi, s.ABI)
			assert.Equal(t, tc.level, s.Level)
			assert.Len(t, s.Missing, tc.missing)
		})
	}
}

func TestLauncherFailsClosed(t *testing.T) {
	w := newWorld(t)
	good, err := w.policy().Encode()
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		env  []string
		args []string
	}{
		{"no-policy", nil, []string{filepath.Join(w.bin, "probe"), "read", w.secret}},
		{"bad-policy", []string{PolicyVar + `={"read_exec":["relative"]}`}, []string{filepath.Join(w.bin, "probe"), "read", w.secret}},
		{"unknown-field", []string{PolicyVar + `={"allow_all":true}`}, []string{filepath.Join(w.bin, "probe"), "read", w.secret}},
		{"missing-rw-folder", []string{PolicyVar + `={"read_write":["/nonexistent/breakglass"]}`}, []string{filepath.Join(w.bin, "probe"), "read", w.secret}},
		// Run from the folder holding probe, under a policy that lets it
		// run: only the launcher's own refusal stops a relative path.
		{"relative-program", []string{PolicyVar + "=" + good}, []string{"probe", "read", w.secret}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(filepath.Join(w.bin, "launcher"), tc.args...)
			cmd.Env = tc.env
			cmd.Dir = w.bin
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			require.ErrorAs(t, err, &ee, "%s", out)
			assert.Equal(t, ExitCannotRun, ee.ExitCode())
			assert.NotContains(t, string(out), "ok")
		})
	}
	t.Run("shell-needs-one-argument", func(t *testing.T) {
		cmd := exec.Command(filepath.Join(w.bin, ShellName), "true", "extra")
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		require.ErrorAs(t, err, &ee, "%s", out)
		assert.Equal(t, ExitCannotRun, ee.ExitCode())
	})
}

func TestPolicyCovers(t *testing.T) {
	root := t.TempDir()
	link := filepath.Join(root, "link")
	require.NoError(t, os.Symlink("/etc", link))
	p := Policy{ReadOnly: []string{"/etc/ssl", link}, ReadWrite: []string{"/work/s/a/work"}, ConnectTCP: []uint16{443, 22}}
	assert.True(t, p.Covers("/etc/ssl/private/key.pem"))
	assert.True(t, p.Covers("/work/s/a/work"))
	assert.True(t, p.Covers("/etc/bearer"), "through a symlinked grant")
	assert.False(t, p.Covers("/work/s/a/work2"))
	assert.False(t, p.Covers("/work/s/a/events.jsonl"))
	assert.True(t, p.Connects(443))
	assert.False(t, p.Connects(8080))
	assert.False(t, p.Connects(0))
}

func TestPolicyRoundTrip(t *testing.T) {
	p := Policy{ReadExec: []string{"/usr"}, ReadWrite: []string{"/s/a/home"}, ConnectTCP: []uint16{443}, MaxABI: 4}
	enc, err := p.Encode()
	require.NoError(t, err)
	got, err := Decode(enc)
	require.NoError(t, err)
	assert.Equal(t, p, got)
	var raw map[string]any
	require.NoError(t, json.Unmarshal([]byte(enc), &raw))
	for _, bad := range []Policy{
		{ReadExec: []string{"/"}},
		{ReadWrite: []string{"/a/../b"}},
		{ConnectTCP: []uint16{0}},
		{MaxABI: 8},
		{MaxABI: -2},
	} {
		_, err := bad.Encode()
		assert.ErrorIs(t, err, ErrPolicy, "%+v", bad)
	}
	_, err = Decode(enc + `{}`)
	assert.ErrorIs(t, err, ErrPolicy)
}

// TestSiblingSessionsCannotReadEachOther: two sandboxes side by side (two
// sessions' turns) are separate Landlock domains: one cannot read the
// other's environment (its turn token) nor ptrace or signal it.
func TestSiblingSessionsCannotReadEachOther(t *testing.T) {
	requireLandlock(t, FullABI)
	w := newWorld(t)
	p := w.policy()
	enc, err := p.Encode()
	require.NoError(t, err)
	// Session B's turn: a process that waits, with its token in its
	// environment.
	b := exec.Command(filepath.Join(w.bin, "launcher"), "/bin/sh", "-c", "echo confined; exec sleep 60")
	b.Env = []string{PolicyVar + "=" + enc, "BREAKGLASS_PVE_TOKEN=session-b-secret"}
	b.SysProcAttr = w.asUser()
	out, err := b.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, b.Start())
	// The line comes after the launcher confined itself and exec'd.
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "confined\n", line)
	t.Cleanup(func() {
		_ = b.Process.Kill()
		_ = b.Wait()
	})
	pid := fmt.Sprint(b.Process.Pid)
	got := w.run(t, p, []string{"environ", pid}, []string{"ptrace", pid}, []string{"signal", pid})
	for i, what := range []string{"environ", "ptrace", "signal"} {
		assert.True(t, strings.HasPrefix(got[i], "denied:"), "%s of a sibling sandbox: got %q", what, got[i])
	}
}
