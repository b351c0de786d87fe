package agents

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// frontMatter returns the key: value pairs between the --- lines.
func frontMatter(t *testing.T, b []byte) map[string]string {
	t.Helper()
	s := string(b)
	require.True(t, strings.HasPrefix(s, "---\n"), "starts with front matter")
	end := strings.Index(s[4:], "\n---\n")
	require.Positive(t, end, "front matter is closed")
	out := map[string]string{}
	for _, line := range strings.Split(s[4:4+end], "\n") {
		k, v, ok := strings.Cut(line, ":")
		require.True(t, ok, "front matter line %q", line)
		out[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return out
}

func TestBreakglassFrontMatter(t *testing.T) {
	fm := frontMatter(t, Breakglass)
	assert.Equal(t, "breakglass", fm["name"])
	assert.NotEmpty(t, fm["description"])
	assert.Equal(t, "Bash, Read, Grep, Glob", fm["tools"], "narrow tools: no editing, no web")
	if m, ok := fm["model"]; ok {
		assert.Equal(t, "sonnet", m)
	}
}

func TestBreakglassBody(t *testing.T) {
	body := string(Breakglass)
	for _, want := range []string{
		"ssh devvm",
		"pve status",
		"pve forensics",
		"pve cycle",
		"pve guest",
		"pve console",
		"pve screenshot",
		"Read tool",
		"pve tasks",
		"pve unlock",
		"pve guest-exec -- ",
		"look before you act",
		"prefer a precise `pve guest-exec`",
		"only locked needs `pve unlock`, never a",
		"Diagnose before acting",
		"Least destructive first",
		"untrusted data",
		"no web access",
		"Report",
	} {
		assert.Contains(t, body, want)
	}
	assert.False(t, bytes.Contains(Breakglass, []byte("BEGIN OPENSSH PRIVATE KEY")), "no secrets in the agent file")
}
