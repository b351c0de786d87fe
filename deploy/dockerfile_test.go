package deploy

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// parseDockerfile parses a Dockerfile at the repository root with the
// buildkit parser, the one `docker build` uses.
func parseDockerfile(t *testing.T, name string) []instructions.Stage {
	t.Helper()
	f, err := os.Open(filepath.Join("..", name))
	require.NoError(t, err)
	defer f.Close()
	res, err := parser.Parse(f)
	require.NoError(t, err)
	stages, _, err := instructions.Parse(res.AST, nil)
	require.NoError(t, err)
	return stages
}

// makeVar returns the value of a `NAME := value` line of the Makefile.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	require.NoError(t, err)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` := (.*)$`).FindSubmatch(b)
	require.NotNil(t, m, "Makefile has no %s", name)
	return string(m[1])
}

// makeBuildFlags returns the flags `make build` passes to go build, split
// into words as the shell would.
func makeBuildFlags(t *testing.T) []string {
	t.Helper()
	words, err := shell.NewLex('\\').ProcessWords(makeVar(t, "GOFLAGS_BUILD"), shell.EnvsFromSlice(nil))
	require.NoError(t, err)
	return words
}

// goBuild finds the `go build` RUN of a stage and returns its words.
func goBuild(t *testing.T, stage instructions.Stage) []string {
	t.Helper()
	for _, c := range stage.Commands {
		run, ok := c.(*instructions.RunCommand)
		if !ok {
			continue
		}
		line := strings.Join(run.CmdLine, " ")
		if !strings.Contains(line, "go build") {
			continue
		}
		words, err := shell.NewLex('\\').ProcessWords(line, shell.EnvsFromSlice(nil))
		require.NoError(t, err)
		return words
	}
	t.Fatalf("stage %q has no go build", stage.Name)
	return nil
}

var pinned = regexp.MustCompile(`^[^@\s]+:[^@\s]+@sha256:[0-9a-f]{64}$`)

func TestDockerfiles(t *testing.T) {
	flags := makeBuildFlags(t)
	require.Equal(t, []string{"-trimpath", "-ldflags=-s -w"}, flags)

	for _, tc := range []struct {
		file, binary string
	}{
		{"Dockerfile.web", "web"},
		{"Dockerfile.keyholder", "keyholder"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			stages := parseDockerfile(t, tc.file)
			require.GreaterOrEqual(t, len(stages), 2, "multi-stage")

			for _, s := range stages {
				assert.Regexp(t, pinned, s.BaseName, "base of stage %q must be pinned by digest", s.Name)
			}

			final := stages[len(stages)-1]
			var user string
			for _, c := range final.Commands {
				if u, ok := c.(*instructions.UserCommand); ok {
					user = u.User
				}
			}
			require.NotEmpty(t, user, "final stage needs a USER")
			uid := strings.SplitN(user, ":", 2)[0]
			assert.NotContains(t, []string{"0", "root"}, uid, "final stage must not run as root")

			// The binary is built with exactly the flags of `make build`,
			// statically (CGO_ENABLED=0).
			words := goBuild(t, stages[0])
			i := slices.Index(words, "build")
			require.Positive(t, i)
			assert.Contains(t, words, "CGO_ENABLED=0")
			var got []string
			for _, w := range words[i+1:] {
				if w == "-o" {
					break
				}
				got = append(got, w)
			}
			assert.Equal(t, flags, got)
			assert.Equal(t, "./cmd/"+tc.binary, words[len(words)-1])
		})
	}
}

func TestKeyholderImageCopiesOnlyItsBinary(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile.keyholder")
	final := stages[len(stages)-1]
	var copies []*instructions.CopyCommand
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.CopyCommand:
			copies = append(copies, c)
		case *instructions.AddCommand, *instructions.RunCommand:
			t.Errorf("keyholder final stage must only copy its binary, found %T", c)
		}
	}
	require.Len(t, copies, 1)
	assert.Equal(t, stages[0].Name, copies[0].From)
	assert.Equal(t, []string{"/out/keyholder"}, copies[0].SourcePaths)
	assert.Contains(t, final.BaseName, "distroless/static")
}

func TestWebImagePinsTheClaudeCLI(t *testing.T) {
	want := makeVar(t, "CLAUDE_VERSION")
	stages := parseDockerfile(t, "Dockerfile.web")
	var found bool
	for _, s := range stages {
		for _, c := range s.Commands {
			if a, ok := c.(*instructions.ArgCommand); ok {
				for _, kv := range a.Args {
					if kv.Key == "CLAUDE_VERSION" {
						found = true
						require.NotNil(t, kv.Value)
						assert.Equal(t, want, *kv.Value, "Dockerfile.web and the Makefile must pin the same claude CLI")
					}
				}
			}
		}
	}
	assert.True(t, found, "Dockerfile.web has no ARG CLAUDE_VERSION")
}

// TestWebImageUserHasPasswdEntry: the web image's runtime uid has a passwd
// entry with a home (OpenSSH refuses a uid with no name, which broke the
// agent's `ssh devvm`; internal/redteam runs the agent as such a user).
func TestWebImageUserHasPasswdEntry(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile.web")
	final := stages[len(stages)-1]
	var user, useradd string
	for _, c := range final.Commands {
		switch c := c.(type) {
		case *instructions.UserCommand:
			user = c.User
		case *instructions.RunCommand:
			if line := strings.Join(c.CmdLine, " "); strings.Contains(line, "useradd") {
				useradd = line
			}
		}
	}
	require.NotEmpty(t, user)
	uid, gid, _ := strings.Cut(user, ":")
	require.NotEmpty(t, useradd, "the final stage makes no user")
	assert.Contains(t, useradd, "--uid "+uid)
	if gid != "" {
		assert.Contains(t, useradd, "--gid "+gid)
	}
	assert.Contains(t, useradd, "--home-dir /")
	assert.Contains(t, useradd, "--create-home")
}
