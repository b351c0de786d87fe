package systemtest

import (
	"context"
	"errors"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/agenthome"
	"breakglass/internal/devstack"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// sshDevvm runs `ssh devvm <args>` the way the agent does: through the
// web's wrapper on the agent's PATH, with the web's ssh config.
func sshDevvm(t testing.TB, w *stacktest.Stack, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(w.AgentDir, "bin", "ssh"), append([]string{"devvm"}, args...)...)
	cmd.Env = []string{"PATH=" + filepath.Join(w.AgentDir, "bin") + ":/usr/bin:/bin", agenthome.ConfigVar + "=" + filepath.Join(w.AgentDir, "ssh_config")}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	}
	t.Fatalf("ssh devvm: %v\n%s", err, out)
	return "", -1
}

// TestKeyholderKilled: the keyholder dies with SIGKILL mid-session and
// comes back. Meanwhile the web stays up, /readyz says 503, verbs answer
// 503 saying the keyholder is unreachable, and the agent's `ssh devvm`
// fails cleanly; after the restart everything works again with no change
// on the web's side.
func TestKeyholderKilled(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{})
	kh := w.StartKeyholder(t)
	web := w.StartWeb(t)
	id := web.NewSession(t)

	check := func(t *testing.T) {
		code, body := web.Do(t, http.MethodGet, "/readyz", "")
		assert.Equal(t, http.StatusOK, code, body)
		code, body = web.Do(t, http.MethodPost, "/api/vm/status", `{"session_id":"`+id+`"}`)
		assert.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, "status: running")
		out, exit := sshDevvm(t, w, "echo", "devvm-answers")
		assert.Equal(t, 0, exit, out)
		assert.Contains(t, out, "devvm-answers")
	}
	t.Run("before", check)

	kh.Kill()
	t.Run("keyholder-down", func(t *testing.T) {
		code, body := web.Do(t, http.MethodGet, "/healthz", "")
		assert.Equal(t, http.StatusOK, code, "the web stays up")
		code, body = web.Do(t, http.MethodGet, "/readyz", "")
		assert.Equal(t, http.StatusServiceUnavailable, code, body)
		assert.Contains(t, body, "keyholder")
		code, body = web.Do(t, http.MethodPost, "/api/vm/status", `{"session_id":"`+id+`"}`)
		assert.Equal(t, http.StatusServiceUnavailable, code, body)
		assert.Contains(t, body, "keyholder unreachable: the verb did not run")
		code, body = web.Do(t, http.MethodPost, "/api/vm/reset", "{}")
		assert.Equal(t, http.StatusServiceUnavailable, code, body)
		code, body = web.Do(t, http.MethodGet, "/api/vm", "")
		assert.Equal(t, http.StatusServiceUnavailable, code, body)
		code, body = web.Do(t, http.MethodGet, "/api/sessions/"+id, "")
		assert.Equal(t, http.StatusOK, code, body)

		began := time.Now()
		out, exit := sshDevvm(t, w, "echo", "devvm-answers")
		t.Logf("ssh devvm with the keyholder down: exit %d after %v:\n%s", exit, time.Since(began).Round(time.Millisecond), out)
		assert.Equal(t, 255, exit, "ssh's own failure status, not a hang or a crash")
		assert.NotContains(t, out, "devvm-answers")
		assert.Contains(t, out, "Permission denied (publickey)", "a clean refusal: no key to offer")
	})

	w.StartKeyholder(t)
	t.Run("after-restart", check)

	t.Run("transcript", func(t *testing.T) {
		got := web.History(t, id)
		var verbs []string
		for _, e := range got {
			if e.Type == "verb" {
				verbs = append(verbs, e.Raw)
			}
		}
		require.Len(t, verbs, 3, "the failed verb is in the transcript too: %v", webtest.Types(got))
		assert.Contains(t, verbs[1], "keyholder", "the 503's reason is in the transcript")
	})
}

// TestProxmoxBlackholed: the Proxmox host accepts TCP and never answers. A
// verb ends in 504 within the verb timeout plus one second, and while it
// hangs the operator's other controls answer: the session list, a new
// session, a prompt (whose turn then finishes), the verb list, /readyz.
func TestProxmoxBlackholed(t *testing.T) {
	const verbTimeout = 3 * time.Second
	w := stacktest.New(t, stacktest.Options{PVE: devstack.PVEBlackholed, Script: []apidouble.Turn{apidouble.T(apidouble.Text("Still here."))}})
	w.StartKeyholder(t, "BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS=3")
	web := w.StartWeb(t)
	id := web.NewSession(t)

	type answer struct {
		code    int
		body    string
		err     error
		elapsed time.Duration
	}
	verb := make(chan answer, 1)
	began := time.Now()
	go func() {
		code, body, err := web.DoErr(http.MethodPost, "/api/vm/status", `{"session_id":"`+id+`"}`)
		verb <- answer{code, body, err, time.Since(began)}
	}()
	select {
	case <-w.Blackholed:
	case a := <-verb:
		t.Fatalf("the verb ended before the host was dialled: %d %s %v", a.code, a.body, a.err)
	case <-time.After(30 * time.Second):
		t.Fatal("the keyholder never dialled the blackholed host")
	}

	// The verb now hangs on the host. Everything else must answer.
	for _, r := range []struct {
		name, method, path, body string
		want                     int
	}{
		{"list-sessions", http.MethodGet, "/api/sessions", "", http.StatusOK},
		{"one-session", http.MethodGet, "/api/sessions/" + id, "", http.StatusOK},
		{"new-session", http.MethodPost, "/api/sessions", "{}", http.StatusCreated},
		{"prompt", http.MethodPost, "/api/sessions/" + id + "/prompt", `{"text":"are you there?"}`, http.StatusAccepted},
		{"verb-list", http.MethodGet, "/api/vm", "", http.StatusOK},
		{"readyz", http.MethodGet, "/readyz", "", http.StatusOK},
		{"ui", http.MethodGet, "/", "", http.StatusOK},
	} {
		code, body := web.Do(t, r.method, r.path, r.body)
		assert.Equal(t, r.want, code, "%s: %s", r.name, body)
		select {
		case a := <-verb:
			t.Fatalf("the verb ended (%d after %v) before %s was checked: the test proves nothing", a.code, a.elapsed, r.name)
		default:
		}
	}

	a := <-verb
	require.NoError(t, a.err)
	t.Logf("verb against the blackholed host: %d after %v (timeout %v)", a.code, a.elapsed.Round(time.Millisecond), verbTimeout)
	assert.Equal(t, http.StatusGatewayTimeout, a.code, a.body)
	assert.Less(t, a.elapsed, verbTimeout+time.Second, "504 within the verb timeout + 1 s")
	assert.GreaterOrEqual(t, a.elapsed, verbTimeout, "the keyholder waited the whole timeout")

	got := web.Turn(t, id, 0, 2*time.Minute)
	assert.Equal(t, "success", got[len(got)-1].Data["outcome"], "the turn started while the verb hung finished: %v", webtest.Types(got))
	all := web.History(t, id)
	v, ok := webtest.Find(all, "verb")
	require.True(t, ok, "the timed-out verb is in the tranScript: %v", webtest.Types(all))
	assert.NotEmpty(t, v.Data["error"])
}

// TestDevvmDown: the devvm's port is closed. The agent's `ssh devvm` (real
// claude CLI running the scripted Bash call) fails at once with ssh's own
// message as the tool's error, and the turn still ends with done.
func TestDevvmDown(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{DevvmDown: true, Script: []apidouble.Turn{
		apidouble.T(apidouble.Text("Checking the devvm. "), apidouble.Bash("ssh devvm uptime")),
		apidouble.AfterToolResult(apidouble.Text("The devvm does not answer on SSH.")),
	}})
	w.StartKeyholder(t)
	web := w.StartWeb(t)
	id := web.NewSession(t)
	web.Prompt(t, id, "is the devvm up?")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := web.Attach(t, ctx, id, 0)
	var got []ev
	var toolAt, resultAt time.Time
	for {
		e, err := st.Next()
		require.NoError(t, err, "after %v", webtest.Types(got))
		got = append(got, e)
		switch e.Type {
		case "tool":
			toolAt = time.Now()
		case "tool_result":
			resultAt = time.Now()
		}
		if e.Type == "done" {
			break
		}
	}
	tool, ok := webtest.Find(got, "tool")
	require.True(t, ok, "%v", webtest.Types(got))
	assert.Equal(t, "ssh devvm uptime", tool.Data["input"])
	res, ok := webtest.Find(got, "tool_result")
	require.True(t, ok, "%v", webtest.Types(got))
	t.Logf("tool call to tool result: %v; output: %v", resultAt.Sub(toolAt).Round(time.Millisecond), res.Data["output"])
	assert.Equal(t, true, res.Data["is_error"], "a failed ssh is a tool error")
	assert.Contains(t, res.Data["output"], "Connection refused", "ssh's own reason reaches the agent")
	assert.Contains(t, res.Data["output"], "255")
	done := got[len(got)-1]
	assert.Equal(t, "success", done.Data["outcome"], "the turn ends normally: %v", webtest.Types(got))
	reqs := w.Double.MessageRequests()
	require.NotEmpty(t, reqs)
	results := reqs[len(reqs)-1].ToolResults()
	require.Len(t, results, 1, "the model got the tool's error")
}

// TestClaudeWedged: the agent's Bash call hangs (a long sleep the model
// never gets an answer from). The turn timeout fires: done(timeout), and
// no process of the turn is left, the sleep included.
func TestClaudeWedged(t *testing.T) {
	// A name no other process has: the hanging command runs under it
	// (the CLI refuses a standalone sleep, so it is wrapped).
	mark := "wedged-" + strings.ReplaceAll(time.Now().Format("150405.000000"), ".", "")
	w := stacktest.New(t, stacktest.Options{Script: []apidouble.Turn{
		apidouble.T(apidouble.Text("Waiting on the host. "), apidouble.Bash("bash -c 'exec -a "+mark+" sleep 600'")),
		apidouble.AfterToolResult(apidouble.Text("never")),
	}})
	// Long enough for the CLI to start and reach the tool call on a busy
	// machine: the test checks the order, not the time.
	web := w.StartWeb(t, "BREAKGLASS_TURN_TIMEOUT_SECONDS=20")
	id := web.NewSession(t)
	web.Prompt(t, id, "wait for the host")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := web.Attach(t, ctx, id, 0)
	var got []ev
	for {
		e, err := st.Next()
		require.NoError(t, err, "after %v", webtest.Types(got))
		got = append(got, e)
		if e.Type == "tool" {
			break
		}
		require.NotEqual(t, "done", e.Type, "the turn ended before the tool ran: %v", webtest.Types(got))
	}
	if !eventually(15*time.Second, func() bool { return len(procsMatching(mark)) > 0 }) {
		rest := st.UntilDone(t)
		t.Fatalf("the Bash tool's sleep never started: %v", rest)
	}
	turnProcs := webtest.Descendants(web.Pid())
	t.Logf("processes of the turn: %v, sleep: %v", turnProcs, procsMatching(mark))

	got = append(got, st.UntilDone(t)...)
	done := got[len(got)-1]
	assert.Equal(t, "timeout", done.Data["outcome"], "%v", webtest.Types(got))
	e, ok := webtest.Find(got, "error")
	require.True(t, ok, "a timeout says so: %v", webtest.Types(got))
	t.Logf("error: %v", e.Data["message"])
	assert.Empty(t, procsMatching(mark), "the wedged sleep outlived its turn")
	assert.Empty(t, webtest.Descendants(web.Pid()), "a process of the turn outlived it")
	for _, p := range turnProcs {
		assert.False(t, webtest.Alive(p), "process %d of the turn is still alive", p)
	}
	code, body := web.Do(t, http.MethodGet, "/api/sessions/"+id, "")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, `"state":"idle"`)
}
