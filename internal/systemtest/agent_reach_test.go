package systemtest

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// TestAgentSSHDevvmThroughKeyholder is the agent's reach end to end: the real
// claude CLI, scripted to run `ssh devvm …` in its Bash tool, goes through the
// web's ssh wrapper and config, the keyholder's restricted agent, to the
// devvm double, and the tool result carries the double's answer.
//
// The web can read no private key: both key files are deleted once the
// keyholder has loaded them and before the web starts, and nothing under the
// test's folder (sessions, the agent's HOME, sockets) holds one afterwards.
func TestAgentSSHDevvmThroughKeyholder(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{Script: []apidouble.Turn{
		apidouble.T(apidouble.Text("Checking the devvm. "), apidouble.Bash("ssh devvm echo devvm-says-hello")),
		apidouble.AfterToolResult(apidouble.Text("The devvm answers.")),
	}})
	w.StartKeyholder(t)
	for _, k := range []string{w.PVEKey, w.DevvmKey} {
		require.NoError(t, os.Remove(k))
	}
	web := w.StartWeb(t)

	id := web.NewSession(t)
	web.Prompt(t, id, "is the devvm up?")
	got := web.Turn(t, id, 0, 2*time.Minute)

	tool, ok := webtest.Find(got, "tool")
	require.True(t, ok, "%v", webtest.Types(got))
	assert.Equal(t, "ssh devvm echo devvm-says-hello", tool.Data["input"])
	res, ok := webtest.Find(got, "tool_result")
	require.True(t, ok, "%v", webtest.Types(got))
	assert.Equal(t, false, res.Data["is_error"], "ssh devvm failed: %v", res.Data["output"])
	assert.Contains(t, res.Data["output"], "devvm-says-hello", "the devvm double's answer reaches the agent")
	assert.Equal(t, "success", got[len(got)-1].Data["outcome"], "%v", webtest.Types(got))
	assert.GreaterOrEqual(t, w.Devvm.Logins(), int64(1), "the devvm double saw the login")

	// No private key file anywhere the web reads or writes.
	err := filepath.WalkDir(w.Dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		assert.False(t, bytes.Contains(b, []byte("PRIVATE KEY")), "a private key sits in %s", path)
		return nil
	})
	require.NoError(t, err)
}
