package testbin

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// ClaudeEnv names the pinned claude CLI for tests; the Makefile sets it.
const ClaudeEnv = "BREAKGLASS_TEST_CLAUDE"

// ModuleRoot is the folder holding go.mod, found from the working
// directory up.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// PinnedClaude is where `make deps-claude` installs the pinned CLI under
// the module root.
func PinnedClaude(root string) string {
	return filepath.Join(root, ".tools", "node_modules", ".bin", "claude")
}

// Claude returns the pinned claude CLI: $BREAKGLASS_TEST_CLAUDE, else
// .tools under the module root. It fails tb when it is not there.
func Claude(tb testing.TB) string {
	tb.Helper()
	bin := os.Getenv(ClaudeEnv)
	if bin == "" {
		root, err := ModuleRoot()
		if err != nil {
			tb.Fatalf("find the pinned claude CLI: %v", err)
		}
		bin = PinnedClaude(root)
	}
	if _, err := os.Stat(bin); err != nil {
		tb.Fatalf("claude CLI missing at %s: run make deps-claude (make test installs it)", bin)
	}
	return bin
}

// builds holds what Build built in this process, by package list.
var builds = struct {
	sync.Mutex
	dir  string
	done map[string]error
}{done: map[string]error{}}

// Build builds the packages (import paths, e.g. breakglass/cmd/web) with
// CGO_ENABLED=0 into one folder shared by the whole test process, once per
// package, and returns the folder: a binary is <folder>/<last path
// element>. Cleanup removes the folder.
func Build(tb testing.TB, pkgs ...string) string {
	tb.Helper()
	dir, err := BuildErr(pkgs...)
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// BuildErr is Build for a TestMain, before any test runs.
func BuildErr(pkgs ...string) (string, error) {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir == "" {
		dir, err := os.MkdirTemp("", "breakglass-testbin-")
		if err != nil {
			return "", fmt.Errorf("testbin: %w", err)
		}
		builds.dir = dir
	}
	var todo []string
	for _, p := range pkgs {
		if err, ok := builds.done[p]; ok {
			if err != nil {
				return "", fmt.Errorf("go build %s: %w", p, err)
			}
			continue
		}
		todo = append(todo, p)
	}
	if len(todo) == 0 {
		return builds.dir, nil
	}
	cmd := exec.Command("go", append([]string{"build", "-o", builds.dir + string(filepath.Separator)}, todo...)...)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%v\n%s", err, out)
	}
	for _, p := range todo {
		builds.done[p] = err
	}
	if err != nil {
		return "", fmt.Errorf("go build %s: %w", strings.Join(todo, " "), err)
	}
	return builds.dir, nil
}

// Cleanup removes what Build built; call it when the tests are done (from
// TestMain, or t.Cleanup of the one test that builds).
func Cleanup() {
	builds.Lock()
	defer builds.Unlock()
	if builds.dir != "" {
		os.RemoveAll(builds.dir)
		builds.dir = ""
		clear(builds.done)
	}
}
