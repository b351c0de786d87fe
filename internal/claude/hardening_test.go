package claude

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
)

// Each test names the attack it blocks.

// A prompt written to look like a flag ("--dangerously-skip-permissions")
// must reach claude as the prompt text, never as an option: it is never in
// the argv at all, only the content of a stream-json user message on stdin.
func TestHardeningPromptCannotBecomeAnOption(t *testing.T) {
	r, err := New(Config{Home: "/h"})
	require.NoError(t, err)
	for _, p := range []string{"--dangerously-skip-permissions", "-p", "--tools=WebFetch", "--", "--resume=x"} {
		args := r.Args(Turn{SessionID: "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11", Prompt: p}, false)
		assert.Equal(t, r.Args(Turn{SessionID: "0b6f3c1e-8a5d-4e21-9c3a-5f0e2d7b9a11", Prompt: "hello"}, false), args, "the argv does not depend on the prompt: %q", p)
		assert.Equal(t, "Bash,Read,Grep,Glob", args[indexOf(args, "--tools")+1])
		assert.Equal(t, -1, indexOf(args, "--allowedTools"), "no tool runs unasked by claude's own rules")
		var line struct {
			Type    string `json:"type"`
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
		}
		require.NoError(t, json.Unmarshal(encodeUser(p), &line))
		assert.Equal(t, "user", line.Type)
		assert.Equal(t, p, line.Message.Content)
	}
}

// Web secrets (the bearer token, keyholder paths) and a parent claude's
// CLAUDECODE must not leak into the agent's environment, where any Bash
// command could print them.
func TestHardeningSecretsDoNotReachClaude(t *testing.T) {
	env := FilterEnv([]string{
		"API_BEARER_TOKEN=secret", "BREAKGLASS_PVE_KEY=/etc/breakglass/keys/pve", "CLAUDECODE=1",
		"CLAUDE_CODE_OAUTH_TOKEN=t", "SSH_AUTH_SOCK=/tmp/agent", "KUBERNETES_SERVICE_HOST=10.0.0.1",
	})
	assert.Empty(t, env)
}

// A session id like "../../etc" must be refused before claude runs: it is
// a path under claude's session store.
func TestHardeningSessionIDPathTraversal(t *testing.T) {
	started := false
	r, err := New(Config{Binary: "/bin/true", Home: t.TempDir(), Started: func(int) { started = true }})
	require.NoError(t, err)
	var evs []event.Event
	out := r.Run(t.Context(), Turn{SessionID: "../../etc/passwd", Prompt: "x", Dir: t.TempDir()}, func(e event.Event) { evs = append(evs, e) })
	assert.Equal(t, event.OutcomeError, out.Outcome)
	assert.False(t, started, "no process started")
	require.Len(t, evs, 1)
	assert.Contains(t, string(evs[0].Data), "not a UUID")
}

// An agent or model name from configuration must not smuggle an option or
// a path into argv.
func TestHardeningAgentAndModelNames(t *testing.T) {
	for _, bad := range []string{"--dangerously-skip-permissions", "../../x", "a b", "x\nY"} {
		_, err := New(Config{Home: "/h", Agent: bad})
		assert.ErrorIs(t, err, ErrConfig, "agent %q", bad)
		_, err = New(Config{Home: "/h", Model: bad})
		assert.ErrorIs(t, err, ErrConfig, "model %q", bad)
	}
}

// A huge tool output (a `cat` of a big log) must not grow the transcript
// without bound.
func TestHardeningToolOutputBounded(t *testing.T) {
	assert.LessOrEqual(t, len(capOutput(string(make([]byte, 10<<20)))), MaxToolOutput)
}

func indexOf(ss []string, s string) int {
	for i, x := range ss {
		if x == s {
			return i
		}
	}
	return -1
}
