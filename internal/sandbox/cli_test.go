package sandbox

import (
	"context"
	"encoding/json"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/testbin"
)

// TestRealCLIUnderLauncher runs the real claude CLI under the launcher
// with the agent's policy, as a user that is not root, against the
// scripted API, with agent-shell as its CLAUDE_CODE_SHELL_PREFIX: the turn
// completes, its Bash tool command writes into the work folder, and that
// command (in the nested domain) cannot read the CLI's environment nor
// anything outside the policy.
func TestRealCLIUnderLauncher(t *testing.T) {
	requireLandlock(t, FullABI)
	bin := testbin.Claude(t)
	install, err := InstallDir(bin)
	require.NoError(t, err)
	real, err := filepath.EvalSymlinks(bin)
	require.NoError(t, err)

	w := newWorld(t)
	sess := filepath.Dir(w.work)
	home, tmp := filepath.Join(sess, "home"), filepath.Join(sess, "tmp")
	for _, d := range []string{home, filepath.Join(home, ConfigDirName), tmp} {
		require.NoError(t, os.Mkdir(d, 0o700))
		if os.Geteuid() == 0 {
			require.NoError(t, os.Chown(d, w.uid, w.uid))
		}
	}
	api, err := apidouble.New(apidouble.Config{Script: []apidouble.Turn{
		apidouble.T(apidouble.Bash(`echo made > out.txt; cat /proc/$PPID/environ >/dev/null 2>&1 && echo LEAK-ENV; cat ` + w.secret + ` 2>/dev/null && echo LEAK-FILE; echo tool-done`)),
		apidouble.AfterToolResult(apidouble.Text("all done")),
	}})
	require.NoError(t, err)
	t.Cleanup(api.Close)
	u, err := url.Parse(api.URL())
	require.NoError(t, err)
	port, err := strconv.Atoi(u.Port())
	require.NoError(t, err)

	p := Agent{Claude: install, Executable: w.exe, Dir: w.bin, Ports: []uint16{uint16(port)}}.Policy().Session(home, tmp, w.work)
	enc, err := p.Encode()
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(w.bin, "launcher"), real,
		"-p", "--output-format", "stream-json", "--verbose", "--setting-sources", "",
		"--strict-mcp-config", "--tools", "Bash", "--allowedTools", "Bash", "--", "go")
	cmd.Dir = w.work
	cmd.Env = []string{
		PolicyVar + "=" + enc,
		"HOME=" + home, "CLAUDE_CONFIG_DIR=" + filepath.Join(home, ConfigDirName), "TMPDIR=" + tmp, "PATH=/usr/bin:/bin",
		"ANTHROPIC_BASE_URL=" + api.URL(), "ANTHROPIC_API_KEY=test",
		"CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1", "DISABLE_TELEMETRY=1", "DISABLE_AUTOUPDATER=1",
		"CLAUDE_CODE_SHELL_PREFIX=" + filepath.Join(w.bin, ShellName),
	}
	cmd.SysProcAttr = w.asUser()
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)

	var result, toolOutput string
	for _, line := range strings.Split(string(out), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) != nil {
			continue
		}
		if m["type"] == "result" {
			result, _ = m["subtype"].(string)
		}
		if m["type"] == "user" && strings.Contains(line, "tool_result") {
			toolOutput = line
		}
	}
	assert.Equal(t, "success", result, "%s", out)
	assert.Contains(t, toolOutput, "tool-done")
	assert.NotContains(t, toolOutput, "LEAK")
	b, err := os.ReadFile(filepath.Join(w.work, "out.txt"))
	require.NoError(t, err)
	assert.Equal(t, "made\n", string(b))
}
