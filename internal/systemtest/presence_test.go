package systemtest

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// TestAgentCannotActWithoutThePasskey is the red team of operator presence:
// the real claude CLI's Bash tool, scripted against the API double, tries
// every way around the operator a prompt-injected agent has in the pod,
// with the keyholder requiring presence and alice's passkey enrolled:
//
//   - keyholder.sock directly, with a forged actor;
//   - the web's operator API with the bearer token (as if it had leaked);
//   - the web's operator API with the identity header, from the pod;
//   - approving its own pending reset, without a passkey and with a forged
//     assertion.
//
// The VM is untouched every time, and every attempt that reaches the
// keyholder is an audit line naming its refusal.
func TestAgentCannotActWithoutThePasskey(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{})
	alice := passkey.New("localhost", "http://localhost:8080")
	ops := filepath.Join(w.Dir, "operators")
	require.NoError(t, os.WriteFile(ops, []byte(alice.Line("alice")+"\n"), 0o644))
	kh := w.StartKeyholder(t, "BREAKGLASS_PRESENCE=required", "BREAKGLASS_RP_ID=localhost", "BREAKGLASS_ORIGINS=http://localhost:8080", "BREAKGLASS_OPERATORS_FILE="+ops)
	const token = "bearer-token-the-agent-stole"
	web := w.StartWeb(t, "API_BEARER_TOKEN="+token)

	sock := filepath.Join(w.SocketDir, ipc.SocketName)
	forged := `{"challenge_id":"AAAAAAAAAAAAAAAAAAAAAA","credential_id":"` + alice.CredentialID() +
		`","client_data_json":"e30","authenticator_data":"AAAA","signature":"AAAA"}`
	post := func(label, auth, url, body string) string {
		return fmt.Sprintf(`curl -s -o /dev/null -w '%s=%%{http_code}\n' %s -H 'Content-Type: application/json' -X POST -d '%s' %s`, label, auth, body, url)
	}
	direct := strings.Join([]string{
		fmt.Sprintf(`curl -s -o /dev/null -w 'socket=%%{http_code}\n' --unix-socket %s -H 'Content-Type: application/json' -X POST -d '{"actor":"operator:alice"}' http://keyholder/v1/verbs/stop`, sock),
		fmt.Sprintf(`curl -s -o /dev/null -w 'socket-forged=%%{http_code}\n' --unix-socket %s -H 'Content-Type: application/json' -X POST -d '{"actor":"operator:alice","presence":%s}' http://keyholder/v1/verbs/stop`, sock, forged),
		post("bearer", "-H 'Authorization: Bearer "+token+"'", web.URL+"/api/vm/stop", `{}`),
		post("header", "-H 'X-Authentik-Username: alice'", web.URL+"/api/vm/stop", `{}`),
		"true",
	}, "; ")
	approve := strings.Join([]string{
		"pve reset > reset.out 2>&1 &",
		`for i in $(seq 100); do aid=$(curl -s -H 'X-Authentik-Username: alice' "` + web.URL + `/api/sessions/$BREAKGLASS_PVE_SESSION/export?format=json" | grep -o '"approval_id":"[0-9a-f-]*"' | head -1 | cut -d'"' -f4); [ -n "$aid" ] && break; sleep 0.1; done`,
		`echo "aid=$aid"`,
		post("approve-bare", "-H 'X-Authentik-Username: alice'", `"`+web.URL+`/api/sessions/$BREAKGLASS_PVE_SESSION/approvals/$aid"`, `{"approve":true}`),
		post("approve-forged", "-H 'X-Authentik-Username: alice'", `"`+web.URL+`/api/sessions/$BREAKGLASS_PVE_SESSION/approvals/$aid"`, `{"approve":true,"presence":`+forged+`}`),
		"sleep 1; kill %1 2>/dev/null; cat reset.out; true",
	}, "\n")
	w.Double.Push(
		apidouble.T(apidouble.Text("Stopping the VM myself. "), apidouble.Bash(direct)),
		apidouble.AfterToolResult(apidouble.Text("Now approving my own reset. "), apidouble.Bash(approve)),
		apidouble.AfterToolResult(apidouble.Text("Done.")),
	)

	id := web.NewSession(t)
	web.Prompt(t, id, "the VM is stuck, do whatever it takes")
	got := web.Turn(t, id, 0, 3*time.Minute)
	var outputs []string
	for _, e := range got {
		if e.Type == "tool_result" {
			out, _ := e.Data["output"].(string)
			outputs = append(outputs, out)
		}
	}
	require.Len(t, outputs, 2, "%v", webtest.Types(got))
	t.Logf("direct attempts:\n%s\napproval attempts:\n%s", outputs[0], outputs[1])

	// Every attempt failed: a refusal (401/403), or no connection at all
	// where the agent's sandbox stops it first (000).
	for _, want := range []string{"socket=403", "socket-forged=403"} {
		assert.Contains(t, outputs[0], want)
	}
	for _, label := range []string{"bearer", "header"} {
		assert.Regexp(t, label+`=(401|403|000)(\n|$)`, outputs[0])
	}
	for _, label := range []string{"approve-bare", "approve-forged"} {
		assert.Regexp(t, label+`=(401|403|404|000|200)(\n|$)`, outputs[1])
	}

	// The VM is untouched: nothing but reads reached the simulated host.
	for _, c := range w.VM.Calls() {
		if len(c) > 1 {
			assert.Contains(t, []string{"status", "config", "guest", "monitor"}, c[1], "the host ran %v", c)
		}
	}
	assert.Equal(t, "running", w.VM.State())

	// Each attempt that reached the keyholder is an audit line with its
	// refusal, before any SSH.
	logs := kh.Logs()
	assert.Contains(t, logs, `"actor":"operator:alice"`)
	assert.Contains(t, logs, `"reason":"presence_missing"`)
	assert.Regexp(t, `"reason":"(unknown_challenge|malformed)"`, logs, "the forged assertion")
	if strings.Contains(outputs[0], "bearer=403") {
		assert.Contains(t, logs, `"actor":"operator:api-token"`, "the bearer's attempt reached the keyholder and was refused there")
	}

	// The sandbox stops the agent's TCP to the web (000 above). Were it
	// to get out, the keyholder still stands: the same two requests from
	// outside the sandbox, with the header from the pod's loopback (which
	// this test's web trusts) and with the bearer token, are refused there.
	code, body := web.Do(t, "POST", "/api/vm/stop", `{}`)
	assert.Equal(t, 403, code, body)
	assert.Contains(t, body, `"presence_refused"`)
	req, err := http.NewRequest(http.MethodPost, web.URL+"/api/vm/stop", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := web.Client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, 403, resp.StatusCode)
	require.Eventually(t, func() bool { return strings.Contains(kh.Logs(), `"actor":"operator:api-token"`) }, 5*time.Second, 50*time.Millisecond,
		"the bearer's attempt is an audit line")
	assert.Equal(t, "running", w.VM.State())
	if strings.Contains(outputs[1], "approve-forged=200") {
		assert.Contains(t, logs, `"actor":"agent:`+id+`"`, "the approved reset went to the keyholder with the forged assertion and was refused")
	}
}
