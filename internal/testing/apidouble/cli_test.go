package apidouble

import (
	"breakglass/internal/testing/testbin"
	"os"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRealCLIEndpoints records what the real CLI calls in -p mode with
// nonessential traffic disabled: only streaming POST /v1/messages?beta=true,
// each answered by the script; nothing falls back.
func TestRealCLIEndpoints(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{
		T(Text("Running it. "), Bash("echo from-the-tool")),
		AfterToolResult(Text("All done.")),
	}})
	cmd := exec.CommandContext(t.Context(), testbin.Claude(t), "-p", "--session-id", "7d1f0e2a-3b4c-4d5e-8f60-718293a4b5c6",
		"--output-format", "stream-json", "--verbose", "--model", "sonnet",
		"--tools", "Bash", "--allowedTools", "Bash", "--", "hello")
	cmd.Dir = t.TempDir()
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"ANTHROPIC_BASE_URL=" + s.URL(), "ANTHROPIC_API_KEY=test",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1",
	}
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, string(out))
	assert.Contains(t, string(out), `"result":"All done."`)

	reqs := s.Requests()
	require.Len(t, reqs, 2)
	for _, r := range reqs {
		assert.Equal(t, "POST /v1/messages?beta=true", r.Method+" "+r.Path+"?"+r.RawQuery)
		assert.True(t, r.Stream)
		assert.True(t, r.Scripted)
		assert.Equal(t, "test", r.Header.Get("X-Api-Key"))
	}
	require.Len(t, reqs[1].ToolResults(), 1)
	assert.Equal(t, "from-the-tool", reqs[1].ToolResults()[0].Text)
	assert.Equal(t, 0, s.Remaining())
}
