package pvegate_test

import (
	"context"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/pvegate"
)

func TestExecRunner(t *testing.T) {
	ctx := context.Background()
	r := pvegate.ExecRunner{}

	t.Run("exit-code", func(t *testing.T) {
		res, err := r.Run(ctx, []string{"false"}, "")
		require.NoError(t, err)
		assert.Equal(t, 1, res.ExitCode)
	})
	t.Run("stdin", func(t *testing.T) {
		res, err := r.Run(ctx, []string{"cat"}, "info status\nquit\n")
		require.NoError(t, err)
		assert.Equal(t, "info status\nquit\n", string(res.Output))
	})
	t.Run("stderr-kept", func(t *testing.T) {
		res, err := r.Run(ctx, []string{"ls", "/no/such/path"}, "")
		require.NoError(t, err)
		assert.NotZero(t, res.ExitCode)
		assert.Contains(t, string(res.Output), "No such file")
	})
	t.Run("output-cap", func(t *testing.T) {
		res, err := pvegate.ExecRunner{MaxOutput: 1000}.Run(ctx, []string{"head", "-c", "3000000", "/dev/zero"}, "")
		require.NoError(t, err)
		assert.Len(t, res.Output, 1000)
		assert.True(t, res.Truncated)
		assert.Equal(t, 0, res.ExitCode, "a full buffer must not kill the command")
	})
	t.Run("timeout", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := r.Run(ctx, []string{"sleep", "30"}, "")
		require.ErrorIs(t, err, pvegate.ErrTimeout)
		assert.Less(t, time.Since(start), 10*time.Second, "the command is killed, not waited for")
	})
	t.Run("timeout-kills-process-group", func(t *testing.T) {
		// The lead process forks a child (as qm forks helpers) and both
		// hang. At the deadline the whole group is killed: the child must
		// not outlive the command. sh is the test's forker only.
		ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		r := pvegate.ExecRunner{WaitDelay: 100 * time.Millisecond}
		res, err := r.Run(ctx, []string{"sh", "-c", "sleep 30 & echo $!; wait"}, "")
		require.ErrorIs(t, err, pvegate.ErrTimeout)
		pid, perr := strconv.Atoi(strings.TrimSpace(string(res.Output)))
		require.NoError(t, perr, "output %q", res.Output)
		t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
		assert.Eventually(t, func() bool { return !alive(pid) }, 3*time.Second, 10*time.Millisecond,
			"the forked child %d outlived the timeout", pid)
	})
	t.Run("child-holds-output", func(t *testing.T) {
		// The test uses sh to leave a background child holding stdout, as
		// a daemonising helper of qm could; pve-gate itself never runs sh.
		r := pvegate.ExecRunner{WaitDelay: 100 * time.Millisecond}
		res, err := r.Run(ctx, []string{"sh", "-c", "sleep 2 & echo started; exit 3"}, "")
		require.NoError(t, err)
		assert.Equal(t, 3, res.ExitCode, "the command's own status stands")
		assert.Equal(t, "started\n", string(res.Output))
	})
	t.Run("not-found", func(t *testing.T) {
		_, err := r.Run(ctx, []string{"no-such-command-here"}, "")
		require.ErrorIs(t, err, pvegate.ErrNotFound)
	})
	t.Run("relative-path", func(t *testing.T) {
		_, err := r.Run(ctx, []string{"./qm"}, "")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "relative command path")
	})
	t.Run("empty-argv", func(t *testing.T) {
		_, err := r.Run(ctx, nil, "")
		require.Error(t, err)
	})
}

func TestExecRunnerEnvironmentIsFixed(t *testing.T) {
	// Attack: a caller's environment (LD_PRELOAD, PATH with a planted qm)
	// steering what the gate runs.
	t.Setenv("LD_PRELOAD", "/tmp/evil.so")
	t.Setenv("PATH", t.TempDir()+":/usr/bin:/bin")
	t.Setenv("SSH_ORIGINAL_COMMAND", "status")
	res, err := pvegate.ExecRunner{}.Run(context.Background(), []string{"env"}, "")
	require.NoError(t, err)
	assert.Equal(t, strings.Join(pvegate.Env, "\n")+"\n", string(res.Output))
	assert.Equal(t, "PATH="+pvegate.FixedPath, pvegate.Env[0])
}

// alive reports whether pid is a process that has not exited (a zombie
// waiting for its reaper has exited).
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name's closing parenthesis.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || (s[i+2] != 'Z' && s[i+2] != 'X')
}

func symlink(oldname, newname string) error { return os.Symlink(oldname, newname) }
