package agents

import (
	"bytes"
	"encoding/json"
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
		"The operator may refuse a command",
		"Do not try\n  to reach the same result another way",
	} {
		assert.Contains(t, body, want)
	}
	assert.False(t, bytes.Contains(Breakglass, []byte("BEGIN OPENSSH PRIVATE KEY")), "no secrets in the agent file")
}

func TestParseBreakglass(t *testing.T) {
	d, err := Parse(Breakglass)
	require.NoError(t, err)
	assert.Equal(t, "breakglass", d.Name)
	assert.Equal(t, []string{"Bash", "Read", "Grep", "Glob"}, d.Tools)
	assert.Contains(t, d.Prompt, "Diagnose before acting")
	assert.False(t, strings.HasPrefix(d.Prompt, "---"), "the front matter is not part of the prompt")
	in, err := d.Inline()
	require.NoError(t, err)
	var m map[string]map[string]any
	require.NoError(t, json.Unmarshal([]byte(in), &m))
	require.Contains(t, m, "breakglass")
	assert.Equal(t, d.Prompt, m["breakglass"]["prompt"])
	assert.NotContains(t, m["breakglass"], "name", "the name is the key")
}

func TestParseRefuses(t *testing.T) {
	for _, tc := range []struct{ name, in string }{
		{"no-front-matter", "hello"},
		{"unclosed", "---\nname: a\n"},
		{"bad-line", "---\nname a\n---\nbody"},
		{"no-name", "---\ndescription: d\n---\nbody"},
		{"no-body", "---\nname: a\ndescription: d\n---\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.in))
			assert.ErrorIs(t, err, ErrAgentFile)
		})
	}
}
