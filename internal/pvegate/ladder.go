package pvegate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image/png"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"breakglass/internal/verbs"
)

// The recovery ladder's verbs: look at the VM (screenshot, console, guest,
// tasks) and act inside it (guest-exec) when ssh to it is dead.

// Bounds of the ladder's verbs.
const (
	// DefaultGuestTimeout bounds each guest agent command of guest.
	DefaultGuestTimeout = 5 * time.Second
	// DefaultConsoleWindow is how long console listens.
	DefaultConsoleWindow = 3 * time.Second
	// ConsoleMaxOutput caps what console prints of the serial socket.
	ConsoleMaxOutput = 64 << 10
	// TasksMax is how many of the VM's tasks tasks prints, newest first.
	TasksMax = 20
	// guestExecGrace is how much longer than qm guest exec's own --timeout
	// pve-gate waits for it.
	guestExecGrace = 15 * time.Second
	// staleDumpAge is when a screendump folder left by a killed pve-gate is
	// swept away by the next screenshot.
	staleDumpAge = 10 * time.Minute
)

// ExitUnavailable: what the verb reads is not there (no screen dump, no
// serial socket). The output says why.
const ExitUnavailable = 69

// GuestCommands are the only guest agent commands guest ever sends.
var GuestCommands = []string{"ping", "get-osinfo", "get-fsinfo", "network-get-interfaces"}

// ScreendumpFile is the name of the dump inside screenshot's own folder.
const ScreendumpFile = "screen.ppm"

// screenshot has QEMU dump the screen as a PPM into a fresh folder of its
// own, converts it to PNG, and writes the PNG to stdout.
func (g *Gate) screenshot(ctx context.Context, stdout, stderr io.Writer) int {
	dir, err := g.dumpDir()
	if err != nil {
		fmt.Fprintf(stderr, "pve-gate: screenshot: %v\n", err)
		return ExitConfig
	}
	// WARNING: the folder goes on every path out, a monitor killed at its
	// timeout included (TestScreenshotTempDirGoneAfterKilledMonitor,
	// TestSSHScreenshot).
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, ScreendumpFile)
	args := []string{"monitor", strconv.Itoa(g.vmid)}
	res, err := g.qmRun(ctx, g.sectionTimeout, args, "screendump "+file+"\n")
	if err != nil || res.ExitCode != 0 {
		stderr.Write(bounded(res.Output, 1024))
		return exitCode(res, err, "qm monitor "+args[1], g.sectionTimeout, stderr)
	}
	f, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		fmt.Fprintf(stderr, "pve-gate: screenshot: QEMU wrote no screen dump (is VM %d running, with a display?); the monitor said:\n", g.vmid)
		stderr.Write(bounded(res.Output, 1024))
		return ExitUnavailable
	}
	defer f.Close()
	img, err := DecodePPM(f, MaxScreenSide)
	if err != nil {
		fmt.Fprintf(stderr, "pve-gate: screenshot: %v\n", err)
		return ExitUnavailable
	}
	var buf bytes.Buffer
	if err := (&png.Encoder{CompressionLevel: png.DefaultCompression}).Encode(&buf, img); err != nil {
		fmt.Fprintf(stderr, "pve-gate: screenshot: encode PNG: %v\n", err)
		return ExitUnavailable
	}
	if buf.Len() > verbs.MaxImageOutput {
		fmt.Fprintf(stderr, "pve-gate: screenshot: the PNG is %d bytes, more than the %d allowed; refused, not cut\n", buf.Len(), verbs.MaxImageOutput)
		return ExitUnavailable
	}
	stdout.Write(buf.Bytes())
	return ExitOK
}

// dumpDir makes a fresh 0700 folder under the run dir, which must be a
// real folder of the gate's own user that nobody else may enter (created
// if missing). Folders a killed pve-gate left behind are swept first.
func (g *Gate) dumpDir() (string, error) {
	if err := os.Mkdir(g.runDir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("make %s: %w", g.runDir, err)
	}
	fi, err := os.Lstat(g.runDir)
	if err != nil {
		return "", err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return "", fmt.Errorf("%s is not a folder (a symlink?)", g.runDir)
	case fi.Mode().Perm()&0o077 != 0:
		return "", fmt.Errorf("%s has mode %#o; it must be 0700 (root-only)", g.runDir, fi.Mode().Perm())
	case !ok || int(st.Uid) != os.Geteuid():
		return "", fmt.Errorf("%s is not owned by pve-gate's user", g.runDir)
	}
	if old, err := filepath.Glob(filepath.Join(g.runDir, "screendump-*")); err == nil {
		for _, o := range old {
			if fi, err := os.Lstat(o); err == nil && time.Since(fi.ModTime()) > staleDumpAge {
				os.RemoveAll(o)
			}
		}
	}
	return os.MkdirTemp(g.runDir, "screendump-")
}

// console reads the serial socket for the console window, writing nothing.
func (g *Gate) console(ctx context.Context, stdout, stderr io.Writer) int {
	fi, err := os.Stat(g.serial)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		fmt.Fprintf(stdout, "VM %d has no serial console socket (%s): give it one with `qm set %d --serial0 socket` and a console on ttyS0 in the guest (see docs/pve-host.md)\n",
			g.vmid, g.serial, g.vmid)
		return ExitUnavailable
	case err != nil:
		fmt.Fprintf(stderr, "pve-gate: console: %v\n", err)
		return ExitUnavailable
	case fi.Mode().Type() != fs.ModeSocket:
		fmt.Fprintf(stderr, "pve-gate: console: %s is not a socket\n", g.serial)
		return ExitUnavailable
	}
	dctx, cancel := context.WithTimeout(ctx, g.consoleWindow)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(dctx, "unix", g.serial)
	if err != nil {
		fmt.Fprintf(stdout, "VM %d's serial console socket does not answer (is the VM running?): %v\n", g.vmid, err)
		return ExitUnavailable
	}
	defer conn.Close()
	stop := context.AfterFunc(dctx, func() { conn.Close() })
	defer stop()
	_ = conn.SetReadDeadline(time.Now().Add(g.consoleWindow))
	// Read only: nothing is ever written to the guest's console, and the
	// write side is left open (QEMU drops a client that half-closes).
	out := &boundedBuffer{limit: ConsoleMaxOutput}
	_, _ = io.Copy(out, io.LimitReader(conn, ConsoleMaxOutput+1))
	text := strings.ToValidUTF8(out.buf.String(), "\uFFFD")
	fmt.Fprintf(stdout, "== serial console of VM %d: %d bytes in %v ==\n", g.vmid, out.buf.Len(), g.consoleWindow)
	io.WriteString(stdout, text)
	if text != "" && !strings.HasSuffix(text, "\n") {
		io.WriteString(stdout, "\n")
	}
	switch {
	case out.cut:
		fmt.Fprintf(stdout, "[console output cut at %d bytes]\n", ConsoleMaxOutput)
	case text == "":
		io.WriteString(stdout, "(the guest wrote nothing meanwhile: the console shows only what the guest writes while pve-gate listens, and pve-gate never types into it)\n")
	}
	return ExitOK
}

// guest runs the fixed guest agent commands side by side, each with its own
// timeout, and prints each one's answer in order. The exit code is ping's:
// 0 means the guest agent answers.
func (g *Gate) guest(ctx context.Context, stdout io.Writer) int {
	id := strconv.Itoa(g.vmid)
	type answer struct {
		out  []byte
		code int
	}
	answers := make([]answer, len(GuestCommands))
	var wg sync.WaitGroup
	for i, c := range GuestCommands {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			res, err := g.qmRun(ctx, g.guestTimeout, []string{"guest", "cmd", id, c}, "")
			out := res.Output
			if c == "get-fsinfo" && err == nil && res.ExitCode == 0 {
				out = fsSummary(out)
			}
			b.Write(bounded(out, SectionMaxOutput))
			if len(out) > 0 && out[len(out)-1] != '\n' {
				b.WriteByte('\n')
			}
			code := exitCode(res, err, "qm guest cmd "+id+" "+c, g.guestTimeout, &b)
			switch {
			case code == ExitOK && c == "ping":
				b.WriteString("(ok: the guest agent answers)\n")
			case code != ExitOK && err == nil:
				fmt.Fprintf(&b, "(exit %d)\n", code)
			}
			answers[i] = answer{b.Bytes(), code}
		}()
	}
	wg.Wait()
	for i, c := range GuestCommands {
		fmt.Fprintf(stdout, "== qm guest cmd %s %s ==\n", id, c)
		stdout.Write(answers[i].out)
	}
	return answers[0].code
}

// fsSummary turns get-fsinfo's JSON into one line per filesystem with its
// use; anything it cannot read is printed as it came.
func fsSummary(raw []byte) []byte {
	var fss []struct {
		Mountpoint string `json:"mountpoint"`
		Type       string `json:"type"`
		Used       *int64 `json:"used-bytes"`
		Total      *int64 `json:"total-bytes"`
	}
	if err := json.Unmarshal(raw, &fss); err != nil {
		return raw
	}
	sort.Slice(fss, func(i, j int) bool { return fss[i].Mountpoint < fss[j].Mountpoint })
	var b bytes.Buffer
	for _, f := range fss {
		if f.Used == nil || f.Total == nil || *f.Total <= 0 {
			fmt.Fprintf(&b, "%-24s %-8s (no usage reported)\n", f.Mountpoint, f.Type)
			continue
		}
		pct := float64(*f.Used) * 100 / float64(*f.Total)
		flag := ""
		if pct >= 95 {
			flag = "   !! nearly full"
		}
		fmt.Fprintf(&b, "%-24s %-8s %s of %s used (%.0f%%)%s\n", f.Mountpoint, f.Type,
			humanBytes(*f.Used), humanBytes(*f.Total), pct, flag)
	}
	if len(fss) == 0 {
		b.WriteString("(no filesystems reported)\n")
	}
	return b.Bytes()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatInt(n, 10) + " B"
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// task is the part of a /cluster/tasks entry tasks prints.
type task struct {
	UPID      string          `json:"upid"`
	ID        json.RawMessage `json:"id"`
	Type      string          `json:"type"`
	Status    string          `json:"status"`
	User      string          `json:"user"`
	Node      string          `json:"node"`
	StartTime int64           `json:"starttime"`
	EndTime   int64           `json:"endtime"`
}

// tasks prints the VM's newest Proxmox tasks and its lock line.
func (g *Gate) tasks(ctx context.Context, stdout, stderr io.Writer) int {
	id := strconv.Itoa(g.vmid)
	argv := []string{g.pvesh, "get", "/cluster/tasks", "--output-format", "json"}
	tctx, cancel := context.WithTimeout(ctx, g.sectionTimeout)
	res, err := g.run.Run(tctx, argv, "")
	cancel()
	fmt.Fprintf(stdout, "== tasks of VM %s (newest first, at most %d) ==\n", id, TasksMax)
	code := ExitOK
	if err != nil || res.ExitCode != 0 {
		stdout.Write(bounded(res.Output, SectionMaxOutput))
		code = exitCode(res, err, "pvesh get /cluster/tasks", g.sectionTimeout, stdout)
		if err == nil {
			fmt.Fprintf(stdout, "(pvesh exited %d)\n", code)
		}
	} else {
		printTasks(stdout, res, id)
	}
	fmt.Fprintf(stdout, "== qm config %s: lock ==\n", id)
	cres, err := g.qmRun(ctx, g.sectionTimeout, []string{"config", id}, "")
	if err != nil || cres.ExitCode != 0 {
		stdout.Write(bounded(cres.Output, SectionMaxOutput))
		c := exitCode(cres, err, "qm config "+id, g.sectionTimeout, stdout)
		if code == ExitOK {
			code = c
		}
		return code
	}
	lock := ""
	for _, line := range strings.Split(string(cres.Output), "\n") {
		if strings.HasPrefix(line, "lock:") {
			lock = line
		}
	}
	if lock == "" {
		io.WriteString(stdout, "no lock\n")
	} else {
		stdout.Write(markLock([]byte(lock + "\n")))
	}
	return code
}

// printTasks prints the entries of /cluster/tasks whose id is the VM's.
func printTasks(w io.Writer, res Result, id string) {
	var all []task
	if res.Truncated {
		io.WriteString(w, "(pvesh's answer was cut; cannot read it)\n")
		return
	}
	if err := json.Unmarshal(res.Output, &all); err != nil {
		fmt.Fprintf(w, "(pvesh's answer is not a JSON list of tasks: %v)\n", err)
		return
	}
	var mine []task
	for _, t := range all {
		var s string
		if json.Unmarshal(t.ID, &s) != nil {
			s = string(t.ID)
		}
		if s == id {
			mine = append(mine, t)
		}
	}
	sort.SliceStable(mine, func(i, j int) bool { return mine[i].StartTime > mine[j].StartTime })
	if len(mine) > TasksMax {
		mine = mine[:TasksMax]
	}
	if len(mine) == 0 {
		io.WriteString(w, "(no recent tasks of this VM)\n")
		return
	}
	for _, t := range mine {
		status := t.Status
		if status == "" && t.EndTime == 0 {
			status = "running"
		}
		end := "-"
		if t.EndTime > 0 {
			end = time.Unix(t.EndTime, 0).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s  %-10s %-20s %-14s end %s\n", time.Unix(t.StartTime, 0).UTC().Format(time.RFC3339),
			oneWord(t.Type), oneWord(status), oneWord(t.User), end)
	}
}

// oneWord keeps a field from the host to one short printable word.
func oneWord(s string) string {
	s = strings.Join(strings.Fields(strings.ToValidUTF8(s, "?")), "_")
	if len(s) > 40 {
		s = s[:40]
	}
	if s == "" {
		return "-"
	}
	return s
}

// guestExec runs qm guest exec with the argv, element for element after
// "--", under the host lock (taken by runVerb).
func (g *Gate) guestExec(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	timeout := time.Duration(verbs.GuestExecTimeout)*time.Second + guestExecGrace
	args := verbs.GuestExecQMArgs(g.vmid, argv)
	res, err := g.qmRun(ctx, timeout, args, "")
	stdout.Write(res.Output)
	if res.Truncated {
		fmt.Fprintf(stderr, "pve-gate: output of qm guest exec cut\n")
	}
	return exitCode(res, err, "qm guest exec", timeout, stderr)
}

// bounded returns at most n bytes of b.
func bounded(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "…\n"...)
	}
	return b
}
