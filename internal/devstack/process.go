package devstack

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"regexp"
	"sync"
	"syscall"
	"time"
)

// stopGrace is how long a child gets between SIGTERM and SIGKILL.
const stopGrace = 5 * time.Second

// process is one child binary of the stack.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // the exit error, valid once done is closed
}

// startProcess runs bin with exactly env (no inherited environment), its
// output prefixed with its name, in its own process group.
func startProcess(name, bin string, env []string, out io.Writer) (*process, error) {
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.WaitDelay = stopGrace
	pw := prefixWriter(name, out)
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

// stop sends SIGTERM, then SIGKILL to the group after stopGrace, and waits.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(stopGrace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	}
}

// errExited reports a child that ended while the stack was starting.
var errExited = errors.New("exited")

// waitReady polls ready until it succeeds, the process exits, or ctx ends.
func (p *process) waitReady(ctx context.Context, ready func() error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w before it was ready: %v", p.name, errExited, p.err)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", p.name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// prefixWriter copies lines to out, each prefixed with "[name] ".
func prefixWriter(name string, out io.Writer) io.WriteCloser {
	r, w := io.Pipe()
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			mu.Lock()
			fmt.Fprintf(out, "[%s] %s\n", name, sc.Text())
			mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return w
}

// codeWatcher passes the keyholder's output on and sends the enrollment
// code of its "enrollment open" line (JSON, field "code") once.
type codeWatcher struct {
	out  io.Writer
	code chan<- string
}

// enrollCode matches the code field of the keyholder's enrollment line.
var enrollCode = regexp.MustCompile(`"code":"([0-9]{8})"`)

func (c codeWatcher) Write(p []byte) (int, error) {
	if m := enrollCode.FindSubmatch(p); m != nil {
		select {
		case c.code <- string(m[1]):
		default:
		}
	}
	return c.out.Write(p)
}
