package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Mutant is one one-line change of a security check.
type Mutant struct {
	// File is the source file, relative to the module root.
	File string
	// From is the original line, without its indentation; it must occur
	// exactly once in File, or once after the line After.
	From string
	// After, if set, is a line (without indentation) occurring exactly
	// once in File; From is its first occurrence after it.
	After string
	// To replaces From (the indentation is kept).
	To string
	// Tests, if set, is a -run pattern of the tests expected to kill the
	// mutant; they run first, and the whole package only if they pass.
	// It only makes kills faster: a survivor always faced every test.
	Tests string
	// Equivalent, if set, says why the mutant cannot change behaviour; it
	// is listed, never run.
	Equivalent string
}

// Pkg is the mutant's package, as a go command pattern.
func (m Mutant) Pkg() string { return "./" + filepath.ToSlash(filepath.Dir(m.File)) }

// errApply marks a mutant whose original line is missing or ambiguous.
var errApply = errors.New("mutant does not apply")

// apply returns src with m's line replaced and the line's 1-based number.
func apply(src []byte, m Mutant) ([]byte, int, error) {
	lines := strings.SplitAfter(string(src), "\n")
	find := func(want string, from int) []int {
		var at []int
		for i := from; i < len(lines); i++ {
			if strings.TrimSpace(lines[i]) == want {
				at = append(at, i)
			}
		}
		return at
	}
	from := 0
	if m.After != "" {
		after := find(m.After, 0)
		if len(after) != 1 {
			return nil, 0, fmt.Errorf("%w: %q occurs %d times in %s, want once", errApply, m.After, len(after), m.File)
		}
		from = after[0] + 1
	}
	at := find(m.From, from)
	switch {
	case len(at) == 0:
		return nil, 0, fmt.Errorf("%w: %q not found in %s", errApply, m.From, m.File)
	case len(at) > 1 && m.After == "":
		return nil, 0, fmt.Errorf("%w: %q occurs %d times in %s; give After", errApply, m.From, len(at), m.File)
	}
	l := lines[at[0]]
	indent := l[:len(l)-len(strings.TrimLeft(l, " \t"))]
	eol := ""
	if strings.HasSuffix(l, "\n") {
		eol = "\n"
	}
	lines[at[0]] = indent + m.To + eol
	return []byte(strings.Join(lines, "")), at[0] + 1, nil
}

// Outcome of one mutant.
type Outcome string

const (
	Killed   Outcome = "killed"
	Survived Outcome = "SURVIVED"
	Invalid  Outcome = "INVALID" // does not apply or does not compile
)

// result is what running one mutant gave.
type result struct {
	m       Mutant
	line    int
	outcome Outcome
	// by names what killed it: a test, "panic" or "timeout"; for
	// Invalid, why.
	by      string
	elapsed time.Duration
}

func main() {
	var (
		timeout = flag.Duration("timeout", 60*time.Second, "per-mutant timeout of one go test run")
		maxKill = flag.Duration("max-kill", 15*time.Second, "fail when the slowest kill takes longer")
		only    = flag.String("only", "", "run only the mutants whose file or line contains one of these (comma-separated)")
		list    = flag.Bool("list", false, "list the mutants and exit")
		check   = flag.Bool("check", false, "only check that every mutant applies, and exit")
		jobs    = flag.Int("j", 1, "mutants built and run at once (the machine may be shared)")
	)
	flag.Parse()
	if *check {
		if err := checkApply(os.Stdout, mutants); err != nil {
			fmt.Fprintf(os.Stderr, "mutate: %v\n", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Stdout, mutants, *only, *list, *jobs, *timeout, *maxKill); err != nil {
		fmt.Fprintf(os.Stderr, "mutate: %v\n", err)
		os.Exit(1)
	}
}

func run(out io.Writer, all []Mutant, only string, list bool, jobs int, timeout, maxKill time.Duration) error {
	var live, equiv []Mutant
	for _, m := range all {
		if only != "" && !matches(m, only) {
			continue
		}
		if m.Equivalent != "" {
			equiv = append(equiv, m)
			continue
		}
		live = append(live, m)
	}
	if list {
		for _, m := range live {
			fmt.Fprintf(out, "%s\t%s\t→ %s\n", m.File, m.From, m.To)
		}
		for _, m := range equiv {
			fmt.Fprintf(out, "%s\t%s\t→ %s\t(equivalent: %s)\n", m.File, m.From, m.To, m.Equivalent)
		}
		return nil
	}
	tmp, err := os.MkdirTemp("", "mutate")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	root, err := os.Getwd()
	if err != nil {
		return err
	}

	// The tests must pass before anything is mutated, or every mutant
	// would look killed.
	pkgs := map[string]bool{}
	for _, m := range live {
		pkgs[m.Pkg()] = true
	}
	var names []string
	for p := range pkgs {
		names = append(names, p)
	}
	sort.Strings(names)
	fmt.Fprintf(out, "mutate: %d mutants (%d more equivalent, not run) in %d packages\n", len(live), len(equiv), len(names))
	// The whole package's run gets twice what it took unmutated (and at
	// least -timeout): on a loaded machine a slow suite is not a kill.
	pkgTimeout := map[string]time.Duration{}
	for _, p := range names {
		start := time.Now()
		fail, output := goTest(root, tmp, p, 5*timeout)
		if fail != "" {
			// A flaky test would make every mutant look killed: say so,
			// and try once more before giving up.
			fmt.Fprintf(out, "baseline  %s failed without any mutant (%s); once more\n", p, fail)
			if fail, output = goTest(root, tmp, p, 5*timeout); fail != "" {
				return fmt.Errorf("the tests of %s fail without any mutant (%s):\n%s", p, fail, output)
			}
		}
		took := time.Since(start)
		pkgTimeout[p] = max(timeout, 2*took)
		fmt.Fprintf(out, "baseline  %6.1fs  %s passes\n", took.Seconds(), p)
	}

	// Each worker takes the next mutant; results keep the table's order.
	results := make([]result, len(live))
	next := make(chan int)
	var mu sync.Mutex // protects out
	var wg sync.WaitGroup
	for range max(jobs, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				m := live[i]
				r := runMutant(root, filepath.Join(tmp, fmt.Sprint(i)), m, timeout, pkgTimeout[m.Pkg()])
				results[i] = r
				by := r.by
				if by != "" {
					by = "  [" + by + "]"
				}
				mu.Lock()
				fmt.Fprintf(out, "%-9s %6.1fs  %s:%d  %s  →  %s%s\n", r.outcome, r.elapsed.Seconds(), m.File, r.line, m.From, m.To, by)
				mu.Unlock()
			}
		}()
	}
	for i := range live {
		next <- i
	}
	close(next)
	wg.Wait()
	return report(out, results, equiv, maxKill)
}

// checkApply applies every mutant to the tree as it is, without running
// anything, and fails on the first that does not apply.
func checkApply(out io.Writer, all []Mutant) error {
	var errs []error
	for _, m := range all {
		src, err := os.ReadFile(m.File)
		if err == nil {
			_, _, err = apply(src, m)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	fmt.Fprintf(out, "mutate: %d mutants, %d do not apply\n", len(all), len(errs))
	return errors.Join(errs...)
}

// report prints the summary and fails unless every mutant was killed in
// time.
func report(out io.Writer, results []result, equiv []Mutant, maxKill time.Duration) error {
	var killed int
	var slowest *result
	var bad []result
	for i, r := range results {
		switch r.outcome {
		case Killed:
			killed++
			if slowest == nil || r.elapsed > slowest.elapsed {
				slowest = &results[i]
			}
		default:
			bad = append(bad, r)
		}
	}
	fmt.Fprintln(out)
	if len(equiv) > 0 {
		fmt.Fprintf(out, "equivalent mutants (not run):\n")
		for _, m := range equiv {
			fmt.Fprintf(out, "  %s  %s  →  %s\n      %s\n", m.File, m.From, m.To, m.Equivalent)
		}
	}
	ratio := 100.0
	if len(results) > 0 {
		ratio = 100 * float64(killed) / float64(len(results))
	}
	fmt.Fprintf(out, "kill ratio: %d/%d (%.1f%%) of the non-equivalent mutants; %d equivalent listed\n", killed, len(results), ratio, len(equiv))
	if slowest != nil {
		fmt.Fprintf(out, "slowest kill: %.1fs, %s:%d by %s\n", slowest.elapsed.Seconds(), slowest.m.File, slowest.line, slowest.by)
	}
	if len(bad) > 0 {
		fmt.Fprintf(out, "survivors and invalid mutants:\n")
		for _, r := range bad {
			fmt.Fprintf(out, "  %s %s:%d  %s  →  %s  %s\n", r.outcome, r.m.File, r.line, r.m.From, r.m.To, r.by)
		}
		return fmt.Errorf("%d of %d mutants not killed", len(bad), len(results))
	}
	if slowest != nil && slowest.elapsed > maxKill {
		return fmt.Errorf("the slowest kill took %.1fs, over %v", slowest.elapsed.Seconds(), maxKill)
	}
	return nil
}

// runMutant applies m in dir (an overlay of its one file), builds its
// package's test binary against it once, and runs it: the hinted tests
// first, then the whole package. The time is the tests' alone: the build
// is not the tests' doing.
func runMutant(root, dir string, m Mutant, timeout, pkgTimeout time.Duration) result {
	r := result{m: m}
	src, err := os.ReadFile(filepath.Join(root, m.File))
	if err != nil {
		r.outcome, r.by = Invalid, err.Error()
		return r
	}
	mutated, line, err := apply(src, m)
	r.line = line
	if err != nil {
		r.outcome, r.by = Invalid, err.Error()
		return r
	}
	overlay, err := writeOverlay(dir, filepath.Join(root, m.File), mutated)
	if err != nil {
		r.outcome, r.by = Invalid, err.Error()
		return r
	}
	bin := filepath.Join(dir, "pkg.test")
	if output, err := buildTest(root, overlay, m.Pkg(), bin); err != nil {
		r.outcome, r.by = Invalid, "does not compile: "+firstLines(output, 3)
		return r
	}
	pkgDir := filepath.Join(root, filepath.Dir(m.File))
	stages := []string{""}
	if m.Tests != "" {
		stages = []string{m.Tests, ""}
	}
	for _, pattern := range stages {
		limit := timeout
		if pattern == "" {
			limit = pkgTimeout
		}
		start := time.Now()
		fail, _ := runTest(pkgDir, bin, pattern, limit)
		r.elapsed += time.Since(start)
		if fail == "" {
			continue
		}
		r.outcome, r.by = Killed, fail
		if pattern == "" && isTestName(fail) {
			// Killed by the whole package: confirm with the killing
			// test alone, so a flaky test elsewhere kills nothing.
			if again, _ := runTest(pkgDir, bin, "^"+topTest(fail)+"$", pkgTimeout); again == "" {
				r.outcome, r.by = Survived, "unconfirmed: "+fail+" failed with the package but passes alone"
			}
		}
		return r
	}
	r.outcome = Survived
	return r
}

// writeOverlay writes the mutated file and the -overlay JSON that puts it
// in place of path, and returns the JSON's path.
func writeOverlay(dir, path string, mutated []byte) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	file := filepath.Join(dir, filepath.Base(path))
	if err := os.WriteFile(file, mutated, 0o600); err != nil {
		return "", err
	}
	b, err := json.Marshal(struct{ Replace map[string]string }{map[string]string{path: file}})
	if err != nil {
		return "", err
	}
	ov := filepath.Join(dir, "overlay.json")
	return ov, os.WriteFile(ov, b, 0o600)
}

// buildTest builds pkg's test binary into bin, with the overlay if set.
func buildTest(root, overlay, pkg, bin string) (string, error) {
	args := []string{"test", "-c", "-vet=off", "-o", bin}
	if overlay != "" {
		args = append(args, "-overlay", overlay)
	}
	cmd := exec.Command("go", append(args, pkg)...)
	cmd.Dir = root
	out, err := cmd.CombinedOutput()
	if err == nil {
		if _, serr := os.Stat(bin); serr != nil {
			return "no test files", serr
		}
	}
	return string(out), err
}

var failLine = regexp.MustCompile(`(?m)^\s*--- FAIL: (\S+)`)

// runTest runs a test binary in its package's directory, as go test does,
// (only the tests matching pattern, if set) and returns "" when they pass,
// else what failed them: a test name, "panic", "timeout" or "failed".
func runTest(pkgDir, bin, pattern string, timeout time.Duration) (string, string) {
	args := []string{"-test.count=1", "-test.failfast", "-test.timeout=" + timeout.String()}
	if pattern != "" {
		args = append(args, "-test.run="+pattern)
	}
	// The binary's own timeout panics it; this one is for a binary that
	// does not end even so.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = pkgDir
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	err := cmd.Run()
	output := buf.String()
	switch {
	case err == nil:
		return "", output
	case ctx.Err() != nil, strings.Contains(output, "panic: test timed out"):
		return "timeout", output
	}
	if m := failLine.FindStringSubmatch(output); m != nil {
		return m[1], output
	}
	if strings.Contains(output, "panic:") {
		return "panic", output
	}
	return "failed", output
}

// goTest builds and runs pkg's tests without any mutant (the baseline).
func goTest(root, dir, pkg string, timeout time.Duration) (string, string) {
	bin := filepath.Join(dir, "baseline-"+strings.NewReplacer("/", "_", ".", "_").Replace(pkg)+".test")
	if output, err := buildTest(root, "", pkg, bin); err != nil {
		return "build failed", output
	}
	return runTest(filepath.Join(root, pkg), bin, "", timeout)
}

// matches says whether m's file or line contains one of the comma-separated
// words of only.
func matches(m Mutant, only string) bool {
	for _, w := range strings.Split(only, ",") {
		if w != "" && (strings.Contains(m.File, w) || strings.Contains(m.From, w)) {
			return true
		}
	}
	return false
}

// isTestName says whether goTest's answer names a test.
func isTestName(s string) bool { return strings.HasPrefix(s, "Test") }

// topTest is the top-level test of a subtest's name.
func topTest(s string) string {
	name, _, _ := strings.Cut(s, "/")
	return regexp.QuoteMeta(name)
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, " | ")
}
