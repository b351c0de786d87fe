package claude

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/agents"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/testbin"
	"breakglass/internal/uuid"
)

// TestRealSettingSourcesKeepPlantedFilesOut records the CLI facts the
// confinement relies on (docs/claude-cli.md), with the real CLI: a hook in
// HOME's and in the working folder's settings, and an MCP server in the
// working folder's .mcp.json, run when the CLI starts with its default
// setting sources (the control); with the runner's argv (--setting-sources
// "", --strict-mcp-config, the agent inline) none of them does, and the
// inline agent's prompt is the system prompt.
func TestRealSettingSourcesKeepPlantedFilesOut(t *testing.T) {
	d, err := apidouble.New(apidouble.Config{})
	require.NoError(t, err)
	t.Cleanup(d.Close)
	r, err := New(Config{Binary: testbin.Claude(t), Home: "/unused", AgentDefinition: agents.Breakglass})
	require.NoError(t, err)

	run := func(t *testing.T, args []string, stdin []byte) (home, work string) {
		home, work = t.TempDir(), t.TempDir()
		hook := `{"hooks":{"SessionStart":[{"hooks":[{"type":"command","command":"touch ` + work + `/HOOK-RAN"}]}]}}`
		mcp := `{"mcpServers":{"planted":{"type":"stdio","command":"/bin/sh","args":["-c","touch ` + work + `/MCP-RAN; sleep 5"]}}}`
		for path, content := range map[string]string{
			filepath.Join(home, ".claude", "settings.json"): hook,
			filepath.Join(work, ".claude", "settings.json"): hook,
			filepath.Join(work, ".mcp.json"):                mcp,
			filepath.Join(work, "CLAUDE.md"):                "PLANTED-MEMORY\n",
		} {
			require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o700))
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
		}
		d.Push(apidouble.T(apidouble.Text("hello")))
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, testbin.Claude(t), args...)
		cmd.Dir = work
		cmd.Env = append(FilterEnv(testEnviron(d.URL())), "HOME="+home)
		cmd.Stdin = bytes.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		return home, work
	}

	t.Run("default-sources-control", func(t *testing.T) {
		before := len(d.MessageRequests())
		_, work := run(t, []string{"-p", "--output-format", "stream-json", "--verbose", "--", "hi"}, nil)
		assert.FileExists(t, filepath.Join(work, "HOOK-RAN"), "without --setting-sources \"\" a planted hook runs")
		found := slices.ContainsFunc(d.MessageRequests()[before:], func(req apidouble.Request) bool {
			return strings.Contains(string(req.Body), "PLANTED-MEMORY")
		})
		assert.True(t, found, "without --setting-sources \"\" a planted CLAUDE.md reaches the model")
	})
	t.Run("runner-argv", func(t *testing.T) {
		before := len(d.MessageRequests())
		// The prompt is the stream-json line the runner writes on stdin.
		_, work := run(t, r.Args(Turn{SessionID: uuid.New(), Prompt: "hi"}, false), encodeUser("hi"))
		assert.NoFileExists(t, filepath.Join(work, "HOOK-RAN"))
		assert.NoFileExists(t, filepath.Join(work, "MCP-RAN"))
		reqs := d.MessageRequests()[before:]
		require.NotEmpty(t, reqs)
		for _, req := range reqs {
			assert.NotContains(t, string(req.Body), "PLANTED-MEMORY")
			assert.Contains(t, string(req.Body), "Diagnose before acting", "the inline agent's prompt")
		}
	})
}
