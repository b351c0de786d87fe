package claude

import (
	"io"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestChildEnv(t *testing.T) {
	r, err := New(Config{Home: "/srv/home", BinDir: "/srv/home/bin", Environ: []string{"PATH=/usr/bin:/bin", "CLAUDECODE=1", "HOME=/root"}})
	require.NoError(t, err)
	env := r.childEnv(Turn{Env: []string{"PVE_TOKEN=t", "HOME=/etc", "PATH=/tmp", "CLAUDECODE=1", "junk"}})
	assert.Equal(t, []string{"HOME=/srv/home", "PATH=/srv/home/bin:/usr/bin:/bin", "PVE_TOKEN=t"}, env)

	r, err = New(Config{Home: "/srv/home"})
	require.NoError(t, err)
	assert.Equal(t, []string{"HOME=/srv/home", "PATH=" + defaultPath}, r.childEnv(Turn{}), "no ambient PATH: a fixed one")
}

func TestArgs(t *testing.T) {
	r, err := New(Config{Home: "/h", MaxBudgetUSD: 2.5})
	require.NoError(t, err)
	turn := Turn{SessionID: "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11", Prompt: "-rf /; $(id)"}
	assert.Equal(t, []string{
		"-p", "--session-id", turn.SessionID,
		"--output-format", "stream-json", "--verbose", "--include-partial-messages",
		"--agent", "breakglass", "--model", "sonnet",
		"--tools", "Bash,Read,Grep,Glob", "--allowedTools", "Bash,Read,Grep,Glob",
		"--max-budget-usd", "2.5",
		"--", "-rf /; $(id)",
	}, r.Args(turn, false))
	args := r.Args(turn, true)
	assert.Equal(t, []string{"-p", "--resume", turn.SessionID}, args[:3])
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
