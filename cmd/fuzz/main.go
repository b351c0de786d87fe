package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

func main() {
	fuzztime := flag.Duration("fuzztime", 3*time.Second, "how long each target is fuzzed")
	jobs := flag.Int("jobs", 2, "targets fuzzed at once")
	flag.Parse()
	if *jobs < 1 || *fuzztime <= 0 {
		fmt.Fprintln(os.Stderr, "fuzz: -jobs must be at least 1 and -fuzztime positive")
		os.Exit(2)
	}
	targets, err := findTargets(".")
	if err != nil {
		fmt.Fprintln(os.Stderr, "fuzz:", err)
		os.Exit(1)
	}
	if len(targets) == 0 {
		fmt.Fprintln(os.Stderr, "fuzz: no fuzz targets found")
		os.Exit(1)
	}
	workers := max(1, runtime.NumCPU() / *jobs)
	if err := runAll(context.Background(), targets, *jobs, func(ctx context.Context, t target) result {
		return fuzzOnce(ctx, t, *fuzztime, workers)
	}); err != nil {
		fmt.Fprintln(os.Stderr, "fuzz:", err)
		os.Exit(1)
	}
	fmt.Printf("fuzz: all %d targets passed, %v each\n", len(targets), *fuzztime)
}

// target is one fuzz target: a package folder ("./internal/verbs") and a
// function name.
type target struct {
	dir, name string
}

func (t target) String() string { return t.dir + " " + t.name }

// findTargets lists the fuzz targets of the Go files under root, sorted,
// skipping folders go itself ignores (testdata, node_modules, hidden ones).
func findTargets(root string) ([]target, error) {
	var out []target
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			name := d.Name()
			if path != root && (name == "testdata" || name == "node_modules" || strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		names, err := fuzzFuncs(path)
		for _, n := range names {
			out = append(out, target{dir: "./" + filepath.ToSlash(filepath.Dir(path)), name: n})
		}
		return err
	})
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out, err
}

// fuzzFuncs lists the fuzz targets declared in one test file: the
// functions named Fuzz… that take a *testing.F.
func fuzzFuncs(path string) ([]string, error) {
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.SkipObjectResolution)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Fuzz") || len(fn.Type.Params.List) != 1 {
			continue
		}
		if star, ok := fn.Type.Params.List[0].Type.(*ast.StarExpr); ok {
			if sel, ok := star.X.(*ast.SelectorExpr); ok && sel.Sel.Name == "F" {
				names = append(names, fn.Name.Name)
			}
		}
	}
	return names, nil
}

// verdict is what one go test -fuzz run came to.
type verdict int

const (
	passed   verdict = iota
	found            // a failing input, saved by go
	corpus           // a seed or an input already saved fails
	missing          // go fuzzed nothing: no such target
	unstable         // failed without a failing input: worth one more try
)

// result is one run's verdict and its output.
type result struct {
	verdict verdict
	output  string
}

// judge reads the output and error of a go test -fuzz run. A run that
// fuzzed prints "fuzz: elapsed:" lines; one whose pattern matched no
// target passes silently, so a pass without them is a missing target.
func judge(output string, runErr error) verdict {
	switch {
	case strings.Contains(output, "Failing input written to"):
		return found
	case runErr == nil && strings.Contains(output, "fuzz: elapsed:"):
		return passed
	case runErr == nil:
		return missing
	case strings.Contains(output, "failure while testing seed corpus entry"):
		// A seed or a saved input, run before fuzzing starts.
		return corpus
	}
	return unstable
}

// fuzzOnce runs go test -fuzz for one target.
func fuzzOnce(ctx context.Context, t target, fuzztime time.Duration, workers int) result {
	cmd := exec.CommandContext(ctx, "go", "test", "-run", "^$", "-fuzz", "^"+t.name+"$",
		"-fuzztime", fuzztime.String(), "-parallel", fmt.Sprint(workers), t.dir)
	out, err := cmd.CombinedOutput()
	return result{verdict: judge(string(out), err), output: string(out)}
}

// runAll runs every target (at least one), jobs at a time after the
// first, each at most twice (an unstable run once more); it stops at the
// first target that fails and says which, with its output.
func runAll(ctx context.Context, targets []target, jobs int, run func(context.Context, target) result) error {
	// The first runs alone: it compiles the instrumented standard library
	// and dependencies that every later target reuses (two at once would
	// both compile them on a fresh machine).
	if err := runTarget(ctx, targets[0], run); err != nil {
		return err
	}
	targets = targets[1:]
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	todo := make(chan target)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}
	for range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range todo {
				if err := runTarget(ctx, t, run); err != nil {
					fail(err)
				}
			}
		}()
	}
feed:
	for _, t := range targets {
		select {
		case todo <- t:
		case <-ctx.Done():
			break feed
		}
	}
	close(todo)
	wg.Wait()
	return firstErr
}

// errCancelled marks a run stopped because another target failed.
var errCancelled = errors.New("cancelled")

// runTarget runs one target, once more if the first run was unstable.
func runTarget(ctx context.Context, t target, run func(context.Context, target) result) error {
	for try := 1; ; try++ {
		r := run(ctx, t)
		if ctx.Err() != nil {
			return errCancelled
		}
		switch r.verdict {
		case passed:
			fmt.Printf("fuzz: %s: ok\n", t)
			return nil
		case found:
			return fmt.Errorf("FAILED: %s: a failing input is saved under %s/testdata/fuzz/%s/\n%s", t, t.dir, t.name, r.output)
		case corpus:
			return fmt.Errorf("FAILED: %s: a seed or a saved input fails (go test -run '^%s$' %s)\n%s", t, t.name, t.dir, r.output)
		case missing:
			return fmt.Errorf("FAILED: %s: go test fuzzed nothing (no such fuzz target?)\n%s", t, r.output)
		}
		if try == 2 {
			return fmt.Errorf("FAILED: %s: the fuzzing engine failed twice without a failing input\n%s", t, r.output)
		}
		fmt.Printf("fuzz: %s: the fuzzing engine failed without a failing input (a worker killed or starved); once more:\n%s", t, r.output)
	}
}
