package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func write(t *testing.T, path, content string) {
	t.Helper()
	require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
	require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
}

// TestFindTargets: every Fuzz function of every _test.go file, by package
// folder, and none from the folders go ignores.
func TestFindTargets(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "a", "a_test.go"), "package a\n\nimport \"testing\"\n\nfunc FuzzOne(f *testing.F) {}\nfunc FuzzTwo(f *testing.F) {}\nfunc TestNot(t *testing.T) {}\nfunc FuzzNotATarget(t *testing.T) {}\n// func FuzzComment(f *testing.F) {}\nconst src = `\nfunc FuzzInAString(f *testing.F) {}\n`\n")
	write(t, filepath.Join(root, "b", "c", "c_test.go"), "package c\n\nfunc FuzzThree(f *testing.F) {}\n")
	write(t, filepath.Join(root, "b", "b.go"), "package b\n\nfunc FuzzNotATest(f *testing.F) {}\n")
	for _, ignored := range []string{"testdata", "node_modules", ".tools", "_old"} {
		write(t, filepath.Join(root, "a", ignored, "x_test.go"), "package x\n\nfunc FuzzIgnored(f *testing.F) {}\n")
	}
	t.Chdir(root)
	got, err := findTargets(".")
	require.NoError(t, err)
	assert.Equal(t, []target{{"./a", "FuzzOne"}, {"./a", "FuzzTwo"}, {"./b/c", "FuzzThree"}}, got)
}

func TestJudge(t *testing.T) {
	exit := errors.New("exit status 1")
	for _, tc := range []struct {
		name   string
		output string
		err    error
		want   verdict
	}{
		{"passed", "fuzz: elapsed: 3s, execs: 100\nPASS\nok  \tx\t3.1s\n", nil, passed},
		{"found", "--- FAIL: FuzzX (0.52s)\n    Failing input written to testdata/fuzz/FuzzX/abc\n", exit, found},
		{"seed-fails", "failure while testing seed corpus entry: FuzzX/seed#0\n--- FAIL: FuzzX (0.01s)\n    --- FAIL: FuzzX (0.00s)\n        boom\nFAIL\n", exit, corpus},
		{"no-such-target", "PASS\nok  \tx\t0.006s\n", nil, missing},
		{"engine-lost-a-worker", "fuzz: elapsed: 2s\nfuzzing process hung or terminated unexpectedly: exit status 2\nFAIL\n", exit, unstable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, judge(tc.output, tc.err))
		})
	}
}

// scripted is a run func that answers each target with its verdicts in
// turn and counts the runs.
type scripted struct {
	mu    sync.Mutex
	plans map[string][]verdict
	runs  map[string]int
}

func (s *scripted) run(_ context.Context, t target) result {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.runs[t.name]
	s.runs[t.name]++
	plan := s.plans[t.name]
	if n >= len(plan) {
		return result{verdict: passed}
	}
	return result{verdict: plan[n], output: "output of " + t.name}
}

// TestRunAll: an unstable run is tried once more and a second unstable
// run fails; a failing input is never retried; the error names the
// target and carries its output.
func TestRunAll(t *testing.T) {
	targets := []target{{"./a", "FuzzA"}, {"./a", "FuzzB"}, {"./b", "FuzzC"}}
	for _, tc := range []struct {
		name  string
		plans map[string][]verdict
		runs  map[string]int
		err   string
	}{
		{"all-pass", nil, map[string]int{"FuzzA": 1, "FuzzB": 1, "FuzzC": 1}, ""},
		{"unstable-once", map[string][]verdict{"FuzzB": {unstable}}, map[string]int{"FuzzA": 1, "FuzzB": 2, "FuzzC": 1}, ""},
		{"unstable-twice", map[string][]verdict{"FuzzB": {unstable, unstable}}, map[string]int{"FuzzB": 2}, "./a FuzzB: the fuzzing engine failed twice"},
		{"found", map[string][]verdict{"FuzzC": {found}}, map[string]int{"FuzzC": 1}, "./b FuzzC: a failing input is saved under ./b/testdata/fuzz/FuzzC/"},
		{"seed", map[string][]verdict{"FuzzA": {corpus}}, map[string]int{"FuzzA": 1}, "./a FuzzA: a seed or a saved input fails"},
		{"missing", map[string][]verdict{"FuzzA": {missing}}, map[string]int{"FuzzA": 1}, "no such fuzz target"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &scripted{plans: tc.plans, runs: map[string]int{}}
			err := runAll(context.Background(), targets, 1, s.run)
			if tc.err == "" {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tc.err)
				assert.Contains(t, err.Error(), "output of ")
			}
			for name, n := range tc.runs {
				assert.Equal(t, n, s.runs[name], name)
			}
		})
	}
}

// TestRealGoTestFuzz runs the real go test -fuzz on a small module: a
// target that holds passes, one whose seed fails is reported as such, and
// one that fails on a fuzzed input has it saved under testdata.
func TestRealGoTestFuzz(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go test -fuzz")
	}
	root := t.TempDir()
	write(t, filepath.Join(root, "go.mod"), "module fz\n\ngo 1.22\n")
	write(t, filepath.Join(root, "p", "p_test.go"), `package p

import "testing"

func FuzzHolds(f *testing.F) {
	f.Add("a")
	f.Fuzz(func(t *testing.T, s string) {})
}

func FuzzSeedFails(f *testing.F) {
	f.Add("bad")
	f.Fuzz(func(t *testing.T, s string) {
		if s == "bad" {
			t.Fatal("the seed fails")
		}
	})
}

func FuzzFindsOne(f *testing.F) {
	f.Add("a")
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) > 3 {
			t.Fatal("too long")
		}
	})
}
`)
	t.Chdir(root)
	t.Setenv("GOFLAGS", "-mod=mod")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for name, want := range map[string]verdict{"FuzzHolds": passed, "FuzzSeedFails": corpus, "FuzzFindsOne": found, "FuzzNoSuchTarget": missing} {
		r := fuzzOnce(ctx, target{"./p", name}, time.Second, 1)
		assert.Equal(t, want, r.verdict, "%s:\n%s", name, r.output)
	}
	saved, err := os.ReadDir(filepath.Join(root, "p", "testdata", "fuzz", "FuzzFindsOne"))
	require.NoError(t, err)
	assert.Len(t, saved, 1)
}
