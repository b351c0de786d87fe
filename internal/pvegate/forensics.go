package pvegate

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Bounds of forensics output.
const (
	// SectionMaxOutput caps the bytes printed of one section.
	SectionMaxOutput = 64 << 10
	// ForensicsMaxOutput caps the whole report.
	ForensicsMaxOutput = 512 << 10
	// fileMax caps one file read from the host.
	fileMax = 64 << 10
	// dmesgMaxLines keeps the newest matching kernel lines.
	dmesgMaxLines = 60
	// sectionGrace is how long a section that passed its timeout gets to
	// hand back what it has before the report moves on without it.
	sectionGrace = time.Second
)

// MonitorCommands are the only strings ever sent to the QEMU monitor.
var MonitorCommands = []string{"info status", "info cpus", "info block"}

// section is one headed, separately bounded part of the forensics report.
type section struct {
	title string
	run   func(ctx context.Context, w io.Writer) error
}

// sections returns the read-only sections in report order.
func (g *Gate) sections() []section {
	id := strconv.Itoa(g.vmid)
	s := []section{
		{"qm status " + id + " --verbose", g.qmSection([]string{"status", id, "--verbose"}, "", nil)},
		{"qm config " + id, g.qmSection([]string{"config", id}, "", markLock)},
		{"qemu process", g.processSection},
	}
	for _, mc := range MonitorCommands {
		s = append(s, section{"qm monitor " + id + ": " + mc,
			g.qmSection([]string{"monitor", id}, mc+"\nquit\n", nil)})
	}
	return append(s,
		section{"free -m", g.commandSection([]string{"free", "-m"}, nil)},
		section{"pressure", g.pressureSection},
		section{"pvesm status", g.commandSection([]string{"pvesm", "status"}, nil)},
		section{"kernel: oom and hung tasks", g.commandSection([]string{"dmesg", "-T"}, filterKernel)},
	)
}

// forensics prints every section, each headed and bounded by its own
// timeout; a failing or hanging section is reported and the next one runs.
func (g *Gate) forensics(ctx context.Context, stdout io.Writer) {
	out := &boundedBuffer{limit: ForensicsMaxOutput}
	for _, s := range g.sections() {
		if ctx.Err() != nil {
			fmt.Fprintf(out, "== %s ==\n(skipped: %v)\n", s.title, ctx.Err())
			continue
		}
		fmt.Fprintf(out, "== %s ==\n", s.title)
		out.Write(g.runSection(ctx, s))
	}
	stdout.Write(out.buf.Bytes())
	if out.cut {
		fmt.Fprintf(stdout, "[forensics output cut at %d bytes]\n", ForensicsMaxOutput)
	}
}

// runSection runs one section in its own goroutine with its own buffer, so
// a section stuck where a context cannot reach (a read of /proc) is left
// behind after its timeout instead of holding up the report.
func (g *Gate) runSection(ctx context.Context, s section) []byte {
	ctx, cancel := context.WithTimeout(ctx, g.sectionTimeout)
	defer cancel()
	type done struct {
		out []byte
		err error
	}
	ch := make(chan done, 1)
	go func() {
		buf := &boundedBuffer{limit: SectionMaxOutput}
		err := s.run(ctx, buf)
		b := buf.buf.Bytes()
		if buf.cut {
			b = append(b, fmt.Sprintf("[section cut at %d bytes]\n", SectionMaxOutput)...)
		}
		ch <- done{b, err}
	}()
	var d done
	select {
	case d = <-ch:
	case <-ctx.Done():
		grace := time.NewTimer(sectionGrace)
		defer grace.Stop()
		select {
		case d = <-ch:
		case <-grace.C:
			return []byte(fmt.Sprintf("(no answer within %v; moving on)\n", g.sectionTimeout))
		}
	}
	out := d.out
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	if d.err != nil {
		out = append(out, fmt.Sprintf("(section failed: %v)\n", d.err)...)
	}
	return out
}

// qmSection runs qm with fixed args and stdin; post, if set, rewrites the
// output (e.g. to point out a lock).
func (g *Gate) qmSection(args []string, stdin string, post func([]byte) []byte) func(context.Context, io.Writer) error {
	return g.commandSection(append([]string{g.qm}, args...), post, stdin)
}

// commandSection runs a fixed argv and prints its output and exit status.
func (g *Gate) commandSection(argv []string, post func([]byte) []byte, stdin ...string) func(context.Context, io.Writer) error {
	in := strings.Join(stdin, "")
	return func(ctx context.Context, w io.Writer) error {
		res, err := g.run.Run(ctx, argv, in)
		out := res.Output
		if post != nil && err == nil && res.ExitCode == 0 {
			// Filters apply to a complete answer only: an error message
			// must never be filtered away.
			out = post(out)
		}
		w.Write(out)
		if len(out) > 0 && out[len(out)-1] != '\n' {
			io.WriteString(w, "\n")
		}
		if res.Truncated {
			io.WriteString(w, "[output cut]\n")
		}
		if err != nil {
			if errors.Is(err, ErrTimeout) || ctx.Err() != nil {
				return fmt.Errorf("%s: killed after %v", argv[0], g.sectionTimeout)
			}
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("%s exited %d", argv[0], res.ExitCode)
		}
		return nil
	}
}

// markLock points out qm config's lock line: a VM left locked (backup,
// migrate, snapshot) refuses start and stop, and pve-gate never skips it.
func markLock(out []byte) []byte {
	var b bytes.Buffer
	for _, line := range strings.SplitAfter(string(out), "\n") {
		b.WriteString(line)
		if strings.HasPrefix(line, "lock:") {
			b.WriteString("!! the VM is locked (" + strings.TrimSpace(strings.TrimPrefix(line, "lock:")) +
				"): qm refuses start/stop/reset until the lock is cleared; pve-gate never uses --skiplock\n")
		}
	}
	return b.Bytes()
}

// processSection describes the QEMU process: its status, where it waits,
// and each thread's state, flagging threads in D (uninterruptible sleep,
// typically a vCPU or I/O thread stuck in the kernel).
func (g *Gate) processSection(_ context.Context, w io.Writer) error {
	pidFile := "var/run/qemu-server/" + strconv.Itoa(g.vmid) + ".pid"
	raw, err := g.readFile(pidFile)
	if err != nil {
		return fmt.Errorf("read /%s: %w", pidFile, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil || pid <= 0 {
		return fmt.Errorf("/%s holds no pid: %q", pidFile, truncate(string(raw), 32))
	}
	dir := "proc/" + strconv.Itoa(pid)
	fmt.Fprintf(w, "pid %d (from /%s)\n", pid, pidFile)
	status, err := g.readFile(dir + "/status")
	if err != nil {
		return fmt.Errorf("read /%s/status (is QEMU running?): %w", dir, err)
	}
	w.Write(status)
	if wchan, err := g.readFile(dir + "/wchan"); err == nil {
		fmt.Fprintf(w, "wchan: %s\n", strings.TrimSpace(string(wchan)))
	}
	entries, err := fs.ReadDir(g.fsys, dir+"/task")
	if err != nil {
		return fmt.Errorf("list /%s/task: %w", dir, err)
	}
	var threads []thread
	for _, e := range entries {
		tid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := g.readFile(path.Join(dir, "task", e.Name(), "stat"))
		if err != nil {
			continue // the thread ended while we looked
		}
		th, ok := parseStat(stat)
		if !ok {
			continue
		}
		th.tid = tid
		if wc, err := g.readFile(path.Join(dir, "task", e.Name(), "wchan")); err == nil {
			th.wchan = strings.TrimSpace(string(wc))
		}
		threads = append(threads, th)
	}
	sort.Slice(threads, func(i, j int) bool { return threads[i].tid < threads[j].tid })
	stuck := 0
	for _, th := range threads {
		if th.state == "D" {
			stuck++
		}
	}
	fmt.Fprintf(w, "threads: %d, in D (uninterruptible): %d\n", len(threads), stuck)
	for _, th := range threads {
		flag := ""
		if th.state == "D" {
			flag = "   !! stuck in D"
		}
		fmt.Fprintf(w, "  tid %-7d %-16s state %s wchan %s%s\n", th.tid, th.comm, th.state, orDash(th.wchan), flag)
	}
	return nil
}

// thread is one line of /proc/<pid>/task/<tid>/stat that matters here.
type thread struct {
	tid   int
	comm  string
	state string
	wchan string
}

// parseStat reads "tid (comm) S …" (proc(5)); comm may hold spaces and
// parentheses, so the state is the field after the last ')'.
func parseStat(b []byte) (thread, bool) {
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return thread{}, false
	}
	rest := strings.Fields(s[end+1:])
	if len(rest) == 0 {
		return thread{}, false
	}
	return thread{comm: s[open+1 : end], state: rest[0]}, true
}

// pressureSection prints the host's pressure stall information.
func (g *Gate) pressureSection(_ context.Context, w io.Writer) error {
	var failed []string
	for _, r := range []string{"cpu", "memory", "io"} {
		b, err := g.readFile("proc/pressure/" + r)
		if err != nil {
			failed = append(failed, r)
			continue
		}
		for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			fmt.Fprintf(w, "%-6s %s\n", r+":", line)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("no /proc/pressure/{%s} (kernel without PSI?)", strings.Join(failed, ","))
	}
	return nil
}

// kernelPattern matches kernel lines about the OOM killer and hung tasks.
var kernelPattern = regexp.MustCompile(`(?i)oom|out of memory|hung_task|blocked for more than`)

// filterKernel keeps the newest dmesg lines that match kernelPattern.
func filterKernel(out []byte) []byte {
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if kernelPattern.MatchString(line) {
			keep = append(keep, line)
		}
	}
	if len(keep) == 0 {
		return []byte("(no OOM or hung-task messages)\n")
	}
	var b strings.Builder
	if len(keep) > dmesgMaxLines {
		fmt.Fprintf(&b, "(%d matching lines; the newest %d)\n", len(keep), dmesgMaxLines)
		keep = keep[len(keep)-dmesgMaxLines:]
	}
	for _, l := range keep {
		b.WriteString(l + "\n")
	}
	return []byte(b.String())
}

// readFile reads at most fileMax bytes of name from the host's FS.
func (g *Gate) readFile(name string) ([]byte, error) {
	f, err := g.fsys.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, fileMax))
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func orDash(s string) string {
	if s == "" || s == "0" {
		return "-"
	}
	return s
}
