package devstack

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// defaultStopGrace is how long a child gets between SIGTERM and SIGKILL
// unless Config.StopGrace says otherwise.
const defaultStopGrace = 5 * time.Second

// logTail is how much of a child's output Process.Logs keeps: enough for
// every test that reads a child's log, bounded for a stack left running.
const logTail = 4 << 20

// Process is one child binary of the stack.
type Process struct {
	name  string
	cmd   *exec.Cmd
	grace time.Duration // between SIGTERM and SIGKILL
	done  chan struct{} // closed when the process has exited
	err   error         // the exit error, valid once done is closed

	// watch sees each JSON log line until it returns true (then nil).
	watch func(logLine) bool

	mu   sync.Mutex // guards tail
	tail []byte
}

// startProcess runs bin with exactly env (no inherited environment), its
// output prefixed with its name, in its own process group; a non-nil cred
// runs it as cfg.RunAs, and watch (if not nil) sees each JSON log line
// until it returns true.
func startProcess(name, bin string, env []string, cfg Config, out io.Writer, watch func(logLine) bool) (*Process, error) {
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cfg.RunAs}
	cmd.WaitDelay = cfg.StopGrace
	p := &Process{name: name, cmd: cmd, grace: cfg.StopGrace, done: make(chan struct{}), watch: watch}
	pw := p.lineCopier(out)
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	return p, nil
}

// Pid is the child's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the child has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Logs is the child's output so far (at least its last 2 MiB), as it
// wrote it.
func (p *Process) Logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return string(p.tail)
}

// Signal sends sig to the child.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// ExitCode is the child's exit status once Done is closed (-1 for a
// child ended by a signal).
func (p *Process) ExitCode() int {
	<-p.done
	return p.cmd.ProcessState.ExitCode()
}

// Kill sends SIGKILL to the child and waits for it to be gone.
func (p *Process) Kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// errKilled reports a child that ignored SIGTERM for its grace.
var errKilled = errors.New("did not stop on SIGTERM and was killed")

// Stop sends SIGTERM, then SIGKILL to the group after Config.StopGrace,
// and waits. It reports a child that needed SIGKILL.
func (p *Process) Stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(p.grace):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		return fmt.Errorf("%s %w", p.name, errKilled)
	}
}

// errExited reports a child that ended while the stack was starting.
var errExited = errors.New("exited")

// waitReady polls ready until it succeeds, the process exits, or ctx ends.
func (p *Process) waitReady(ctx context.Context, ready func() error) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w before it was ready: %v\n%s", p.name, errExited, p.err, p.Logs())
		case <-ctx.Done():
			return fmt.Errorf("%s not ready: %w (last: %v)", p.name, ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// lineCopier copies the child's lines to out, each prefixed with
// "[name] ", and keeps them as they are for Logs.
func (p *Process) lineCopier(out io.Writer) io.WriteCloser {
	r, w := io.Pipe()
	go func() {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			fmt.Fprintf(out, "[%s] %s\n", p.name, sc.Text())
			p.keep(sc.Bytes())
			if p.watch != nil {
				var l logLine
				if json.Unmarshal(sc.Bytes(), &l) == nil && p.watch(l) {
					p.watch = nil // only this goroutine reads it once started
				}
			}
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return w
}

// keep appends line to the copy Logs returns; past logTail, the older half
// is dropped (so a busy child costs one copy per logTail/2 bytes).
func (p *Process) keep(line []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tail = append(append(p.tail, line...), '\n')
	if len(p.tail) > logTail {
		p.tail = append(p.tail[:0:0], p.tail[len(p.tail)-logTail/2:]...)
	}
}

// logLine holds the fields of a child's JSON log line that the stack
// waits for.
type logLine struct {
	Message     string `json:"@message"`
	Code        string `json:"code"`
	Addr        string `json:"addr"`
	MetricsAddr string `json:"metrics_addr"`
}
