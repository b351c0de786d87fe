// Package breakglass_test checks rules that hold across the whole
// repository: every package documents what it owns, and only the binaries
// read the environment.
package breakglass_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// packages returns the directories under roots holding non-test Go files,
// with those files parsed, by file name.
func packages(t *testing.T, roots ...string) map[string]map[string]*ast.File {
	t.Helper()
	out := map[string]map[string]*ast.File{}
	fset := token.NewFileSet()
	for _, root := range roots {
		err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
			if err != nil {
				return err
			}
			dir := filepath.Dir(path)
			if out[dir] == nil {
				out[dir] = map[string]*ast.File{}
			}
			out[dir][d.Name()] = f
			return nil
		})
		require.NoError(t, err)
	}
	return out
}

func TestEveryPackageHasOneDocInDocGo(t *testing.T) {
	pkgs := packages(t, "cmd", "internal", "ui", "agents", "deploy")
	require.NotEmpty(t, pkgs)
	for dir, files := range pkgs {
		var docs []string
		for name, f := range files {
			if f.Doc != nil {
				docs = append(docs, name)
			}
		}
		assert.Equal(t, []string{"doc.go"}, docs, "%s: the package doc belongs in doc.go, once", dir)
	}
}

// TestOnlyBinariesReadTheEnvironment keeps configuration in one place per
// binary: packages take a Config.
func TestOnlyBinariesReadTheEnvironment(t *testing.T) {
	for dir, files := range packages(t, "internal", "ui", "agents") {
		if dir == filepath.Join("internal", "testing", "testbin") {
			// Runs only under go test, where the Makefile names the pinned
			// CLI in the environment (BREAKGLASS_TEST_CLAUDE).
			continue
		}
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				sel, ok := n.(*ast.SelectorExpr)
				if !ok {
					return true
				}
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "os" {
					switch sel.Sel.Name {
					case "Getenv", "LookupEnv", "Environ":
						t.Errorf("%s: os.%s outside cmd/: pass it in through a Config", dir, sel.Sel.Name)
					}
				}
				return true
			})
		}
	}
}

// TestSecurityDocNamesRealTests keeps docs/security.md honest: every test
// or fuzz target it cites as proof exists.
func TestSecurityDocNamesRealTests(t *testing.T) {
	doc, err := os.ReadFile("docs/security.md")
	require.NoError(t, err)
	cited := regexp.MustCompile("`((?:Test|Fuzz)[A-Za-z0-9_]+)(?:/[^`]*)?`").FindAllStringSubmatch(string(doc), -1)
	require.NotEmpty(t, cited)
	defined := map[string]bool{}
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".") && path != ".") {
			return filepath.SkipDir
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, m := range regexp.MustCompile(`(?m)^func ((?:Test|Fuzz)[A-Za-z0-9_]+)\(`).FindAllStringSubmatch(string(b), -1) {
			defined[m[1]] = true
		}
		return nil
	})
	require.NoError(t, err)
	for _, c := range cited {
		assert.True(t, defined[c[1]], "docs/security.md cites %s, which no test defines", c[1])
	}
}

// TestFunctionsStayShort keeps functions readable: no non-test function
// over 120 lines, and none over 60 in internal/claude, where the claude
// CLI's changes land.
func TestFunctionsStayShort(t *testing.T) {
	limit := func(path string) int {
		if strings.HasPrefix(path, "internal/claude/") {
			return 60
		}
		return 120
	}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Body == nil {
				continue
			}
			n := fset.Position(fn.End()).Line - fset.Position(fn.Pos()).Line + 1
			if max := limit(path); n > max {
				t.Errorf("%s: %s is %d lines (at most %d)", path, fn.Name.Name, n, max)
			}
		}
		return nil
	})
	require.NoError(t, err)
}

// TestCommentsCiteTheProjectsDocs: code comments cite the project's own
// docs (docs/…, the README), never a design file outside the repository.
func TestCommentsCiteTheProjectsDocs(t *testing.T) {
	cite := regexp.MustCompile(`DESIGN(\.md| §|'s)`)
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != "." && (d.Name() == "node_modules" || d.Name() == "dist" || d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) {
			return filepath.SkipDir
		}
		switch filepath.Ext(path) {
		case ".go", ".js", ".mjs", ".svelte", ".md":
		default:
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if loc := cite.FindIndex(b); loc != nil && path != "repo_test.go" {
			t.Errorf("%s cites %q: cite docs/… instead", path, b[loc[0]:loc[1]])
		}
		return nil
	})
	require.NoError(t, err)
}

// TestNothingIsBuiltOnlyWithOrWithoutRace: make vet runs go vet -race so
// the tests reuse what it compiles; that checks the same files as a plain
// go vet only while no file is built only with, or only without, -race.
func TestNothingIsBuiltOnlyWithOrWithoutRace(t *testing.T) {
	out, err := exec.Command("git", "ls-files", "*.go").Output()
	require.NoError(t, err)
	for _, f := range strings.Fields(string(out)) {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "//go:build") && strings.Contains(l, "race") {
				t.Errorf("%s: %s: make vet would check it as the race build sees it", f, l)
			}
		}
	}
}
