package claude

import (
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/agents"
	"breakglass/internal/sandbox"
)

func TestFilterEnv(t *testing.T) {
	in := []string{
		"PATH=/usr/bin", "LANG=C.UTF-8", "TZ=UTC", "HTTPS_PROXY=http://proxy:3128", "NO_PROXY=127.0.0.1",
		"ANTHROPIC_API_KEY=k", "ANTHROPIC_BASE_URL=http://127.0.0.1:1", "ANTHROPIC_=x",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1",
		"CLAUDECODE=1", "CLAUDE_CODE_ENTRYPOINT=cli", "HOME=/root", "API_BEARER_TOKEN=secret",
		"AWS_SECRET_ACCESS_KEY=x", "http_proxy=x", "LD_PRELOAD=/evil.so", "NOEQUALS", "TZ=Europe/Paris",
	}
	assert.Equal(t, []string{
		"PATH=/usr/bin", "LANG=C.UTF-8", "TZ=Europe/Paris", "HTTPS_PROXY=http://proxy:3128", "NO_PROXY=127.0.0.1",
		"ANTHROPIC_API_KEY=k", "ANTHROPIC_BASE_URL=http://127.0.0.1:1",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1",
	}, FilterEnv(in))
}

// The Bash tool's time limit is above the longest wait for the operator
// (DefaultBashTimeout, 15 minutes).
const bashDefault, bashMax = "BASH_DEFAULT_TIMEOUT_MS=900000", "BASH_MAX_TIMEOUT_MS=900000"

func TestChildEnv(t *testing.T) {
	r, err := New(Config{Home: "/srv/home", BinDir: "/srv/home/bin", Environ: []string{"PATH=/usr/bin:/bin", "CLAUDECODE=1", "HOME=/root"}})
	require.NoError(t, err)
	env := r.childEnv(Turn{Env: []string{"PVE_TOKEN=t", "HOME=/etc", "PATH=/tmp", "CLAUDECODE=1", "BASH_MAX_TIMEOUT_MS=1", "junk"}})
	assert.Equal(t, []string{"HOME=/srv/home", "PATH=/srv/home/bin:/usr/bin:/bin", bashDefault, bashMax, "PVE_TOKEN=t"}, env)

	r, err = New(Config{Home: "/srv/home"})
	require.NoError(t, err)
	assert.Equal(t, []string{"HOME=/srv/home", "PATH=" + defaultPath, bashDefault, bashMax}, r.childEnv(Turn{}), "no ambient PATH: a fixed one")
}

func TestArgs(t *testing.T) {
	r, err := New(Config{Home: "/h", MaxBudgetUSD: 2.5})
	require.NoError(t, err)
	turn := Turn{SessionID: "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11", Prompt: "-rf /; $(id)"}
	assert.Equal(t, []string{
		"-p", "--session-id", turn.SessionID,
		"--input-format", "stream-json",
		"--output-format", "stream-json", "--verbose", "--include-partial-messages",
		"--setting-sources", "", "--strict-mcp-config",
		"--model", "sonnet",
		"--tools", "Bash,Read,Grep,Glob",
		"--permission-prompt-tool", "stdio", "--permission-prompts", "host", "--permission-mode", "default",
		"--max-budget-usd", "2.5",
	}, r.Args(turn, false))
	args := r.Args(turn, true)
	assert.Equal(t, []string{"-p", "--resume", turn.SessionID}, args[:3])

	r, err = New(Config{Home: "/h", AgentDefinition: agents.Breakglass})
	require.NoError(t, err)
	args = r.Args(turn, false)
	i := slices.Index(args, "--agents")
	require.Positive(t, i, "the definition is passed inline")
	var defs map[string]map[string]any
	require.NoError(t, json.Unmarshal([]byte(args[i+1]), &defs))
	assert.Contains(t, defs["breakglass"]["prompt"], "Diagnose before acting")
	assert.Equal(t, []string{"--agent", "breakglass"}, args[i+2:i+4])
	assert.Equal(t, []string{"--setting-sources", ""}, args[i-3:i-1], "no setting source the agent could write")

	_, err = New(Config{Home: "/h", Agent: "other", AgentDefinition: agents.Breakglass})
	assert.ErrorIs(t, err, ErrConfig, "the definition's name must be the --agent")
	_, err = New(Config{Home: "/h", AgentDefinition: []byte("no front matter")})
	assert.ErrorIs(t, err, ErrConfig)
}

func TestConfine(t *testing.T) {
	sess := filepath.Join(t.TempDir(), "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11")
	require.NoError(t, os.Mkdir(sess, 0o700))
	sb := &Sandbox{Launcher: "/usr/local/bin/web", Shell: "/srv/agent/bin/agent-shell",
		Policy: sandbox.Policy{ReadExec: []string{"/usr"}, ConnectTCP: []uint16{443}},
		Env:    []string{"BREAKGLASS_SSH_CONFIG=/srv/agent/ssh_config"}}
	r, err := New(Config{Sandbox: sb})
	require.NoError(t, err)
	require.NoError(t, r.sessionFolders(sess))
	c := r.confine(command{
		Path: "/opt/claude", Args: []string{"-p", "x"}, Dir: sess,
		Env: []string{"PATH=/srv/agent/bin:.:relative:" + sess + "/work:/usr/bin", "HOME=/elsewhere", "CLAUDE_CODE_SHELL_PREFIX=/evil", "CLAUDE_CONFIG_DIR=/elsewhere", "KEEP=1"},
	}, sess)
	assert.Equal(t, "/usr/local/bin/web", c.Path)
	assert.Equal(t, []string{"sandbox", "--", "/opt/claude", "-p", "x"}, c.Args)
	assert.Equal(t, filepath.Join(sess, "work"), c.Dir)
	env := map[string]string{}
	for _, kv := range c.Env {
		k, v, _ := strings.Cut(kv, "=")
		_, dup := env[k]
		assert.False(t, dup, "%s set twice", k)
		env[k] = v
	}
	assert.Equal(t, "/srv/agent/bin:/usr/bin", env["PATH"], "no relative entry, nothing of the session's folders")
	assert.Equal(t, filepath.Join(sess, "home"), env["HOME"])
	assert.Equal(t, filepath.Join(sess, "tmp"), env["TMPDIR"])
	assert.Equal(t, "/srv/agent/bin/agent-shell", env["CLAUDE_CODE_SHELL_PREFIX"])
	assert.Equal(t, "/srv/agent/ssh_config", env["BREAKGLASS_SSH_CONFIG"])
	assert.Equal(t, "1", env["KEEP"])
	p, err := sandbox.Decode(env[sandbox.PolicyVar])
	require.NoError(t, err)
	assert.Equal(t, []string{filepath.Join(sess, "home", ".claude"), filepath.Join(sess, "tmp"), filepath.Join(sess, "work")}, p.ReadWrite)
	assert.Contains(t, p.ReadOnly, filepath.Join(sess, "home"), "HOME itself is read-only: no ~/.bashrc")
	assert.Equal(t, filepath.Join(sess, "home", ".claude"), env["CLAUDE_CONFIG_DIR"])
	assert.Equal(t, []uint16{443}, p.ConnectTCP)
	for _, d := range []string{"home", "home/.claude", "tmp", "work"} {
		fi, err := os.Stat(filepath.Join(sess, d))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	}

	// A folder replaced by a symlink (to widen the policy) is refused.
	require.NoError(t, os.Remove(filepath.Join(sess, "tmp")))
	require.NoError(t, os.Symlink("/", filepath.Join(sess, "tmp")))
	assert.Error(t, r.sessionFolders(sess))
}

func TestNewConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"zero-refused", Config{}, false},
		{"home-only", Config{Home: "/h"}, true},
		{"relative-home", Config{Home: "h"}, false},
		{"relative-bindir", Config{Home: "/h", BinDir: "bin"}, false},
		{"agent-path", Config{Home: "/h", Agent: "../x"}, false},
		{"agent-option", Config{Home: "/h", Agent: "--dangerously-skip-permissions"}, false},
		{"model-space", Config{Home: "/h", Model: "a b"}, false},
		{"model-full-name", Config{Home: "/h", Model: "claude-sonnet-4-5-20250929"}, true},
		{"negative-budget", Config{Home: "/h", MaxBudgetUSD: -1}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(tc.cfg)
			if tc.ok {
				require.NoError(t, err)
				assert.Equal(t, DefaultInitTimeout, r.cfg.InitTimeout)
				assert.Equal(t, DefaultRetryCutoff, r.cfg.RetryCutoff)
				return
			}
			assert.ErrorIs(t, err, ErrConfig)
		})
	}
}

func TestReadLines(t *testing.T) {
	in := "one\r\n\n  \n" + strings.Repeat("x", 100) + "\ntwo\nlast-without-newline"
	ch := make(chan []byte, 16)
	tooLong := readLines(strings.NewReader(in), 50, ch)
	close(ch)
	var got []string
	for l := range ch {
		got = append(got, string(l))
	}
	assert.Equal(t, []string{"one", "two", "last-without-newline"}, got, "blank lines dropped, the long one skipped")
	assert.Equal(t, 1, tooLong)
}

func TestReadLinesLongerThanBuffer(t *testing.T) {
	long := strings.Repeat("y", 200<<10) // beyond bufio's 64 KiB buffer
	ch := make(chan []byte, 4)
	assert.Zero(t, readLines(io.MultiReader(strings.NewReader(long+"\n"), strings.NewReader("z\n")), 1<<20, ch))
	close(ch)
	var got []string
	for l := range ch {
		got = append(got, string(l))
	}
	require.Len(t, got, 2)
	assert.Equal(t, long, got[0])
}

func TestTailBuffer(t *testing.T) {
	b := &tailBuffer{max: 5}
	_, _ = b.Write([]byte("abc"))
	_, _ = b.Write([]byte("defgh"))
	assert.Equal(t, "defgh", b.String())
}
