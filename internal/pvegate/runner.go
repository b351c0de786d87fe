package pvegate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// FixedPath is the only PATH commands run with and are looked up in,
// whatever the caller's environment says.
const FixedPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// Result is what one command produced.
type Result struct {
	// Output is the command's stdout and stderr, interleaved, cut at the
	// runner's limit.
	Output []byte
	// Truncated says Output was cut.
	Truncated bool
	// ExitCode is the command's exit status.
	ExitCode int
}

// Runner runs one command. argv[0] is an absolute path or a name looked up
// in FixedPath; stdin, if not empty, is fed to the command. A command that
// ran and exited, whatever its status, returns a nil error. A command that
// could not start returns an error; one stopped because ctx ended returns an
// error wrapping ErrTimeout (deadline) or context.Canceled.
type Runner interface {
	Run(ctx context.Context, argv []string, stdin string) (Result, error)
}

// ErrTimeout is wrapped by errors of commands stopped at their deadline.
var ErrTimeout = errors.New("timed out")

// ErrNotFound is wrapped when a command name is not in FixedPath.
var ErrNotFound = errors.New("command not found")

// DefaultMaxOutput is ExecRunner's cap on one command's output.
const DefaultMaxOutput = 1 << 20

// ExecRunner runs real commands with os/exec: an argv list, no shell, an
// environment of FixedPath and the C locale only, its own process group
// (killed whole at the deadline), output read through a bounded buffer.
type ExecRunner struct {
	// MaxOutput caps the bytes kept of one command's output; 0 means
	// DefaultMaxOutput.
	MaxOutput int
	// WaitDelay bounds how long output is still read after the command
	// exited or was killed, when something it started keeps its stdout
	// open; 0 means DefaultWaitDelay.
	WaitDelay time.Duration
}

// DefaultWaitDelay is ExecRunner's default WaitDelay.
const DefaultWaitDelay = 2 * time.Second

var _ Runner = ExecRunner{}

// Env is the whole environment of every command ExecRunner starts.
var Env = []string{"PATH=" + FixedPath, "LANG=C", "LC_ALL=C"}

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, argv []string, stdin string) (Result, error) {
	if len(argv) == 0 {
		return Result{}, errors.New("run: empty argv")
	}
	bin, err := lookPath(argv[0])
	if err != nil {
		return Result{}, err
	}
	limit := r.MaxOutput
	if limit <= 0 {
		limit = DefaultMaxOutput
	}
	out := &boundedBuffer{limit: limit}
	cmd := exec.CommandContext(ctx, bin, argv[1:]...)
	cmd.Args[0] = argv[0]
	cmd.Env = Env
	cmd.Dir = "/"
	cmd.Stdout = out
	cmd.Stderr = out
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The whole group: qm forks helpers that would keep the pipe open.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = r.WaitDelay
	if cmd.WaitDelay <= 0 {
		cmd.WaitDelay = DefaultWaitDelay
	}
	err = cmd.Run()
	res := Result{Output: out.buf.Bytes(), Truncated: out.cut}
	if ctx.Err() != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return res, fmt.Errorf("%s: %w", argv[0], ErrTimeout)
		}
		return res, fmt.Errorf("%s: %w", argv[0], ctx.Err())
	}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
		return res, nil
	case errors.Is(err, exec.ErrWaitDelay) && cmd.ProcessState != nil && cmd.ProcessState.Exited():
		// It exited; a child it left behind (a daemonising helper) still
		// held the output pipe. The command's own status stands.
		res.ExitCode = cmd.ProcessState.ExitCode()
		return res, nil
	case errors.As(err, &exitErr) && exitErr.ExitCode() >= 0:
		res.ExitCode = exitErr.ExitCode()
		return res, nil
	default:
		return res, fmt.Errorf("run %s: %w", argv[0], err)
	}
}

// lookPath resolves name in FixedPath; absolute paths are taken as they are.
func lookPath(name string) (string, error) {
	if strings.Contains(name, "/") {
		if !filepath.IsAbs(name) {
			return "", fmt.Errorf("%s: relative command path", name)
		}
		return name, nil
	}
	for _, dir := range filepath.SplitList(FixedPath) {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: %w in %s", name, ErrNotFound, FixedPath)
}

// boundedBuffer keeps the first limit bytes written and notes the rest was
// cut; it never fails a write, so the command is not killed by a full pipe.
type boundedBuffer struct {
	buf   bytes.Buffer
	limit int
	cut   bool
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	room := b.limit - b.buf.Len()
	if room <= 0 {
		if len(p) > 0 {
			b.cut = true
		}
		return len(p), nil
	}
	if len(p) > room {
		b.buf.Write(p[:room])
		b.cut = true
		return len(p), nil
	}
	b.buf.Write(p)
	return len(p), nil
}
