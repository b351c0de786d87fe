package claude

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// command is everything one claude process is started with. Runner.command
// builds it, in one place: the program and its argv, the environment, the
// working directory and the turn's mark.
type command struct {
	Path string
	Args []string
	Env  []string
	Dir  string
	// Mark is the value of MarkVar in Env: how the turn finds processes
	// that left claude's process group.
	Mark string
}

// childLimits bound what a child may make the web hold.
type childLimits struct {
	// MaxLine bounds one stdout line; longer ones are skipped and counted.
	MaxLine int
	// MaxStderr bounds the stderr kept (its tail).
	MaxStderr int
	// Grace bounds each wait at the end: for stragglers carrying the mark,
	// for a stderr some orphan still holds open.
	Grace time.Duration
}

// child is one claude process: started in its own process group, its
// stdout read line by line (bounded) into Lines, its stderr's tail kept,
// and at its end the whole group and every marked process reaped, with no
// goroutine of its own left behind.
//
// It owns the process's standard streams. stdin is one end of a
// socketpair, chosen in startChild alone: the web holds the other end and
// alone writes into it (stream-json input: the prompt, steering messages,
// control responses). A socket, not a pipe: /proc/<pid>/fd/0 of a socket
// cannot be reopened, so no other process can write into it by path.
type child struct {
	cmd    *exec.Cmd
	pgid   int
	mark   string
	limits childLimits

	out    *os.File // stdout's read end: closing it forces the reader's EOF
	errOut *os.File // stderr's read end
	// in is the web's end of stdin; nil once closed. Only the turn's loop
	// goroutine uses it.
	in     *os.File
	stderr *tailBuffer

	lines      chan []byte
	readDone   chan struct{}
	stderrDone chan struct{}
	exited     chan struct{}
	tooLong    int   // written by the reader before readDone closes
	waitErr    error // written before exited closes
}

// childExit is how a child ended, read once it is fully gone.
type childExit struct {
	// Code is the exit status, -1 when killed by a signal.
	Code int
	// Signal names the signal that killed it ("" when it exited).
	Signal string
	// Stderr is the tail of its stderr.
	Stderr string
	// TooLong counts the stdout lines skipped for their length.
	TooLong int
	// Marked counts processes outside the group killed for carrying the mark.
	Marked int
}

// startChild starts c. Both pipes are ours (not exec's copying
// goroutines), so Wait returns when claude exits even if a straggler still
// holds them.
func startChild(c command, limits childLimits) (*child, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	er, ew, err := os.Pipe()
	if err != nil {
		closeAll(pr, pw)
		return nil, err
	}
	in, inWeb, err := newStdin()
	if err != nil {
		closeAll(pr, pw, er, ew)
		return nil, err
	}
	cmd := exec.Command(c.Path, c.Args...)
	cmd.Dir, cmd.Env = c.Dir, c.Env
	cmd.Stdin = in
	cmd.Stdout, cmd.Stderr = pw, ew
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err = cmd.Start()
	closeAll(pw, ew, in) // the child holds its ends now
	if err != nil {
		closeAll(pr, er, inWeb)
		return nil, err
	}
	ch := &child{
		cmd: cmd, pgid: cmd.Process.Pid, mark: c.Mark, limits: limits,
		out: pr, errOut: er, in: inWeb, stderr: &tailBuffer{max: limits.MaxStderr},
		lines: make(chan []byte, 64), readDone: make(chan struct{}),
		stderrDone: make(chan struct{}), exited: make(chan struct{}),
	}
	go ch.readStdout()
	go ch.readStderr()
	go ch.wait()
	return ch, nil
}

// newStdin returns the two ends of a socketpair for claude's stdin: the
// child's (blocking) and the web's (non-blocking, so writes can have a
// deadline).
func newStdin() (child, web *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("stdin socketpair: %w", err)
	}
	if err := unix.SetNonblock(fds[1], true); err != nil {
		unix.Close(fds[0])
		unix.Close(fds[1])
		return nil, nil, fmt.Errorf("stdin socketpair: %w", err)
	}
	// The web only writes: shutting its read side keeps the CLI from
	// filling a buffer nobody reads.
	_ = unix.Shutdown(fds[1], unix.SHUT_RD)
	return os.NewFile(uintptr(fds[0]), "claude-stdin"), os.NewFile(uintptr(fds[1]), "claude-stdin-web"), nil
}

func closeAll(fs ...*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

func (c *child) readStdout() {
	defer close(c.readDone)
	defer close(c.lines)
	c.tooLong = readLines(c.out, c.limits.MaxLine, c.lines)
}

func (c *child) readStderr() {
	defer close(c.stderrDone)
	_, _ = io.Copy(c.stderr, c.errOut)
}

func (c *child) wait() {
	c.waitErr = c.cmd.Wait()
	close(c.exited)
}

// PGID is the child's process group id (its pid).
func (c *child) PGID() int { return c.pgid }

// Lines yields stdout's lines, without their newline; it closes at EOF.
func (c *child) Lines() <-chan []byte { return c.lines }

// Exited closes when claude itself has exited (its group may live on).
func (c *child) Exited() <-chan struct{} { return c.exited }

// Interrupt sends SIGINT to the whole group: claude's way to stop a turn.
func (c *child) Interrupt() { signalGroup(c.pgid, syscall.SIGINT) }

// Kill SIGKILLs whatever is left of the group.
func (c *child) Kill() { signalGroup(c.pgid, syscall.SIGKILL) }

// stdinWriteTimeout bounds one write on claude's stdin: a CLI that stops
// reading must not stall the turn's loop.
const stdinWriteTimeout = 10 * time.Second

// WriteInput writes one line on claude's stdin. It fails once the input is
// closed or when claude does not read it within stdinWriteTimeout.
func (c *child) WriteInput(line []byte) error {
	if c.in == nil {
		return errors.New("claude's stdin is closed")
	}
	if err := c.in.SetWriteDeadline(time.Now().Add(stdinWriteTimeout)); err != nil {
		return err
	}
	_, err := c.in.Write(line)
	return err
}

// CloseInput closes claude's stdin: claude answers what it has read, then
// exits.
func (c *child) CloseInput() {
	if c.in != nil {
		c.in.Close()
		c.in = nil
	}
}

// CloseOutput forces Lines to end even if a straggler holds stdout open.
func (c *child) CloseOutput() { c.out.Close() }

// Finish waits for stdout's end, then makes sure nothing of the turn is
// left: the group reaped, every marked process killed, stderr drained
// (bounded by Grace). Call it after Lines closed and Exited fired.
func (c *child) Finish() childExit {
	<-c.readDone
	<-c.exited
	c.CloseInput()
	c.out.Close()
	reapGroup(c.pgid)
	marked := killMarked("/proc", c.mark, c.limits.Grace)
	select {
	case <-c.stderrDone:
	case <-time.After(c.limits.Grace):
		// An orphan still holds stderr open: stop reading it.
	}
	c.errOut.Close()
	<-c.stderrDone
	return childExit{
		Code:    c.cmd.ProcessState.ExitCode(),
		Signal:  signalOf(c.waitErr),
		Stderr:  c.stderr.String(),
		TooLong: c.tooLong,
		Marked:  marked,
	}
}

// signalOf names the signal that killed a process, or "".
func signalOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return ws.Signal().String()
		}
	}
	return ""
}

// readLines sends each line of rd (without its newline) to lines until EOF
// or a read error. Lines longer than max are skipped; it returns how many.
func readLines(rd io.Reader, max int, lines chan<- []byte) (tooLong int) {
	br := bufio.NewReaderSize(rd, 64<<10)
	var buf []byte
	skipping := false
	for {
		chunk, err := br.ReadSlice('\n')
		if len(chunk) > 0 {
			complete := chunk[len(chunk)-1] == '\n'
			if !skipping {
				if len(buf)+len(chunk) > max+1 {
					skipping = true
					buf = buf[:0]
					tooLong++
				} else {
					buf = append(buf, chunk...)
				}
			}
			if complete || (err != nil && !errors.Is(err, bufio.ErrBufferFull)) {
				if l := trimNewline(buf); !skipping && len(bytes.TrimSpace(l)) > 0 {
					lines <- bytes.Clone(l)
				}
				buf = buf[:0]
				skipping = false
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return tooLong
		}
	}
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// signalGroup sends sig to every process of the group.
func signalGroup(pgid int, sig syscall.Signal) {
	if pgid > 1 {
		_ = syscall.Kill(-pgid, sig)
	}
}

// reapGroup makes sure no process of the group outlives the turn: it kills
// stragglers and waits (bounded) until the group is empty. Processes that
// lost their parent are reaped by init, which takes a moment.
func reapGroup(pgid int) {
	if pgid <= 1 {
		return
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if err := syscall.Kill(-pgid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		if time.Now().After(deadline) {
			return
		}
		time.Sleep(5 * time.Millisecond) // polling the kernel: there is no signal for "group empty"
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	// mu protects the following.
	mu  sync.Mutex
	buf []byte
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return string(b.buf)
}
