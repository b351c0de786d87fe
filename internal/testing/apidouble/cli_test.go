package apidouble

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// claudeBin is the pinned real CLI: $BREAKGLASS_TEST_CLAUDE (the Makefile
// sets it), else .tools under the module root.
func claudeBin(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("BREAKGLASS_TEST_CLAUDE")
	if bin == "" {
		dir, err := os.Getwd()
		require.NoError(t, err)
		for {
			if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
				break
			}
			parent := filepath.Dir(dir)
			require.NotEqual(t, dir, parent, "go.mod not found")
			dir = parent
		}
		bin = filepath.Join(dir, ".tools", "node_modules", ".bin", "claude")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("claude CLI missing at %s: run make deps-claude (make test installs it)", bin)
	}
	return bin
}

// TestRealCLIEndpoints records what the real CLI calls in -p mode with
// nonessential traffic disabled: only streaming POST /v1/messages?beta=true,
// each answered by the script; nothing falls back.
func TestRealCLIEndpoints(t *testing.T) {
	s := newServer(t, Config{Script: []Turn{
		T(Text("Running it. "), Bash("echo from-the-tool")),
		AfterToolResult(Text("All done.")),
	}})
	cmd := exec.CommandContext(t.Context(), claudeBin(t), "-p", "--session-id", "7d1f0e2a-3b4c-4d5e-8f60-718293a4b5c6",
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
