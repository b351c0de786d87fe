package keyholder_test

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/keyholder"
)

// badVerbs are the verb parser's refusals (see internal/verbs), sent as one
// percent-encoded path segment.
var badVerbs = []struct {
	name string
	in   string
}{
	{"empty-name", ""},
	{"trailing-space", "status "},
	{"leading-space", " status"},
	{"upper", "STATUS"},
	{"title", "Status"},
	{"semicolon", "status;reboot"},
	{"and-and", "status && x"},
	{"pipe", "status|sh"},
	{"subshell", "$(id)"},
	{"backticks", "`id`"},
	{"newline", "status\n"},
	{"newline-inside", "status\nreset"},
	{"crlf", "status\r\n"},
	{"nul", "status\x00"},
	{"nul-inside", "sta\x00tus"},
	{"tab", "status\t"},
	{"cyrillic-s", "\u0455tatus"},
	{"fullwidth", "ｓｔａｔｕｓ"},
	{"zero-width", "sta\u200btus"},
	{"combining", "reset\u0301"},
	{"long", strings.Repeat("a", 4096)},
	{"dotdot", "../"},
	{"dotdot-status", "../status"},
	{"slash", "status/"},
	{"vmid-arg", "reset 103"},
	{"qm-line", "qm reset 102"},
	{"skiplock", "stop --skiplock"},
	{"prefix", "stat"},
	{"suffix", "statuss"},
	{"glob", "st*"},
	{"percent", "status%"},
	{"question", "status?"},
	{"hash", "status#"},
}

// TestBadVerbNeverReachesSSH is the attack of a compromised web container
// smuggling a command through the verb path: every refusal is a 400 and not
// one SSH connection is opened.
func TestBadVerbNeverReachesSSH(t *testing.T) {
	e := newSimEnv(t, options{})
	var n int
	for _, c := range badVerbs {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.raw(t, "POST", "/v1/verbs/"+url.PathEscape(c.in), `{"actor":"operator:test"}`)
			assert.Equal(t, http.StatusBadRequest, status, "body %s", body)
			assert.NotEmpty(t, errorOf(t, body))
			assert.NotEmpty(t, reasonOf(t, body))
		})
		n++
	}
	// Targets as an attacker would write them, not as url.PathEscape would.
	raw := []struct{ name, target string }{
		{"enc-space", "/v1/verbs/status%20"},
		{"enc-semicolon", "/v1/verbs/status%3Breboot"},
		{"enc-dotdot-slash", "/v1/verbs/%2e%2e%2f"},
		{"enc-dotdot-status", "/v1/verbs/%2e%2e%2fstatus"},
		{"enc-slash-inside", "/v1/verbs/status%2freset"},
		{"enc-nul", "/v1/verbs/status%00"},
		{"enc-newline", "/v1/verbs/status%0areset"},
		{"enc-bad-escape", "/v1/verbs/status%zz"},
		{"enc-upper", "/v1/verbs/%53tatus"},
		{"enc-reset", "/v1/verbs/%72eset"},
		{"enc-status", "/v1/verbs/%73tatus"},
		{"enc-inside", "/v1/verbs/st%61tus"},
		{"enc-hyphen", "/v1/verbs/guest%2dexec"},
		{"enc-double", "/v1/verbs/%2572eset"},
		{"enc-lower-hex", "/v1/verbs/%73%74%61%72%74"},
		{"raw-semicolon", "/v1/verbs/status;reboot"},
		{"raw-subshell", "/v1/verbs/$(id)"},
		{"double-slash-verb", "/v1/verbs//status"},
		{"double-slash-prefix", "/v1//verbs/status"},
		{"leading-double-slash", "//v1/verbs/status"},
		{"dot-segment", "/v1/verbs/./status"},
		{"dotdot-segment", "/v1/verbs/../verbs/status"},
		{"trailing-slash", "/v1/verbs/status/"},
		{"two-segments", "/v1/verbs/status/reset"},
		{"empty-segment", "/v1/verbs/"},
		{"query", "/v1/verbs/status?reset"},
		{"empty-query", "/v1/verbs/status?"},
		{"absolute-form", "http://keyholder/v1/verbs/status%20"},
	}
	for _, c := range raw {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.raw(t, "POST", c.target, "")
			assert.Equal(t, http.StatusBadRequest, status, "body %s", body)
			if strings.HasPrefix(body, "{") { // net/http's own refusals are plain text
				assert.NotEmpty(t, reasonOf(t, body))
			}
		})
		n++
	}
	assert.GreaterOrEqual(t, n, 30)
	assert.Zero(t, e.sim.Connections(), "no SSH connection was opened")
	assert.Empty(t, e.vm.Calls())
	assert.Equal(t, "running", e.vm.State())
}

// TestOversizedVerbRefusedBeforeHandler: a 1 MiB verb is refused by the
// header limit itself (431), still without SSH.
func TestOversizedVerbRefusedBeforeHandler(t *testing.T) {
	e := newSimEnv(t, options{})
	status, _ := e.raw(t, "POST", "/v1/verbs/"+strings.Repeat("a", 1<<20), "")
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, status)
	assert.Zero(t, e.sim.Connections())
}

// TestMalformedRequestsRefused: bodies and methods outside the API are
// refused before any SSH.
func TestMalformedRequestsRefused(t *testing.T) {
	e := newSimEnv(t, options{})
	cases := []struct {
		name, method, target, body string
		want                       int
	}{
		{"bad-json", "POST", "/v1/verbs/status", `{"actor":`, http.StatusBadRequest},
		{"not-object", "POST", "/v1/verbs/status", `["operator"]`, http.StatusBadRequest},
		{"unknown-field", "POST", "/v1/verbs/status", `{"actor":"a","vmid":103}`, http.StatusBadRequest},
		{"trailing-data", "POST", "/v1/verbs/status", `{"actor":"a"} {"actor":"b"}`, http.StatusBadRequest},
		{"actor-newline", "POST", "/v1/verbs/status", `{"actor":"alice\n@message: forged"}`, http.StatusBadRequest},
		{"actor-bidi", "POST", "/v1/verbs/status", `{"actor":"alice\u202e"}`, http.StatusBadRequest},
		{"actor-long", "POST", "/v1/verbs/status", `{"actor":"` + strings.Repeat("a", 300) + `"}`, http.StatusBadRequest},
		{"body-too-large", "POST", "/v1/verbs/status", `{"actor":"` + strings.Repeat("a", 5000) + `"}`, http.StatusRequestEntityTooLarge},
		{"get-verb", "GET", "/v1/verbs/status", "", http.StatusMethodNotAllowed},
		{"post-healthz", "POST", "/v1/healthz", "", http.StatusMethodNotAllowed},
		{"post-list", "POST", "/v1/verbs", "", http.StatusMethodNotAllowed},
		{"delete-verb", "DELETE", "/v1/verbs/stop", "", http.StatusMethodNotAllowed},
		{"unknown-route", "GET", "/v1/shell", "", http.StatusNotFound},
		{"root", "GET", "/", "", http.StatusBadRequest},
		{"debug-pprof", "GET", "/debug/pprof/", "", http.StatusBadRequest},
		{"debug-pprof-index", "GET", "/debug/pprof/cmdline", "", http.StatusNotFound},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.raw(t, c.method, c.target, c.body)
			assert.Equal(t, c.want, status, "body %s", body)
			assert.NotEmpty(t, errorOf(t, body))
			assert.NotEmpty(t, reasonOf(t, body))
		})
	}
	assert.Zero(t, e.sim.Connections())
}

// TestPercentEncodedVerbNeverRuns is the attack of spelling a mutating verb
// with percent escapes ("%72eset" decodes to "reset") past a check that
// reads the name as sent: the verb segment is matched byte for byte, a '%'
// anywhere in it is refused, never decoded, and nothing is dialled.
func TestPercentEncodedVerbNeverRuns(t *testing.T) {
	e := newSimEnv(t, options{})
	for _, target := range []string{
		"/v1/verbs/%72eset", "/v1/verbs/%72%65%73%65%74", "/v1/verbs/st%6Fp", "/v1/verbs/%73tatus",
		"/v1/verbs/guest%2Dexec", "/v1/verbs/%25",
	} {
		t.Run(target, func(t *testing.T) {
			status, body := e.raw(t, "POST", target, `{"actor":"operator:test"}`)
			assert.Equal(t, http.StatusBadRequest, status, "body %s", body)
			assert.Equal(t, string(keyholder.ReasonPercent), reasonOf(t, body))
		})
	}
	assert.Zero(t, e.sim.Connections(), "no SSH connection was opened")
	assert.Empty(t, e.vm.Calls())
	assert.Equal(t, "running", e.vm.State())
}

// TestStrictJSONBodies is the attack of a body that two JSON readers read
// differently: encoding/json keeps the last of two equal keys and folds
// case, so {"actor":"a","Actor":"b"} would log one actor and a stricter
// reader see another. Unknown fields, duplicate keys and keys in another
// case are refused at every depth, each with its own reason, before any
// SSH.
func TestStrictJSONBodies(t *testing.T) {
	e := newSimEnv(t, options{})
	cases := []struct {
		name, body string
		reason     keyholder.Reason
	}{
		{"duplicate", `{"actor":"a","actor":"b"}`, keyholder.ReasonDuplicateKey},
		{"duplicate-other-case", `{"actor":"a","Actor":"b"}`, keyholder.ReasonWrongCaseKey},
		{"title-case", `{"Actor":"a"}`, keyholder.ReasonWrongCaseKey},
		{"upper-case", `{"ACTOR":"a"}`, keyholder.ReasonWrongCaseKey},
		{"kelvin-sign", `{"Kctor":"a"}`, keyholder.ReasonUnknownField},
		{"escaped-key", `{"actor":"a","actor":"b"}`, keyholder.ReasonDuplicateKey},
		{"unknown", `{"actor":"a","vmid":103}`, keyholder.ReasonUnknownField},
		{"unknown-only", `{"verb":"reset"}`, keyholder.ReasonUnknownField},
		{"nested-unknown", `{"presence":{"challenge_id":"x","extra":1}}`, keyholder.ReasonUnknownField},
		{"nested-duplicate", `{"presence":{"challenge_id":"x","challenge_id":"y"}}`, keyholder.ReasonDuplicateKey},
		{"nested-wrong-case", `{"presence":{"Challenge_ID":"x"}}`, keyholder.ReasonWrongCaseKey},
		{"trailing", `{"actor":"a"} {"actor":"b"}`, keyholder.ReasonTrailingData},
		{"trailing-garbage", `{"actor":"a"}x`, keyholder.ReasonTrailingData},
		{"not-object", `["actor"]`, keyholder.ReasonMalformedJSON},
		{"truncated", `{"actor":`, keyholder.ReasonMalformedJSON},
		{"wrong-type", `{"actor":7}`, keyholder.ReasonMalformedJSON},
		{"deep", strings.Repeat(`{"presence":`, 3) + `{}` + strings.Repeat(`}`, 3), keyholder.ReasonUnknownField},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, body := e.raw(t, "POST", "/v1/verbs/status", c.body)
			assert.Equal(t, http.StatusBadRequest, status, "body %s", body)
			assert.Equal(t, string(c.reason), reasonOf(t, body), "body %s", body)
		})
	}
	status, body := e.raw(t, "POST", "/v1/verbs/status", `{"actor":"operator:test"}`)
	require.Equal(t, http.StatusOK, status, "a strict body passes: %s", body)
	assert.EqualValues(t, 1, e.sim.Connections(), "only the good request dialled")
}

// TestKeyMaterialNeverLogged is the attack of reading keys out of the
// logs: after start-up, verbs, refusals and failures, no line holds any
// part of either private key.
func TestKeyMaterialNeverLogged(t *testing.T) {
	e := newSimEnv(t, options{})
	ctx := context.Background()
	_, err := e.client.Run(ctx, "status", "operator:test")
	require.NoError(t, err)
	_, err = e.client.Run(ctx, "reset", "operator:test")
	require.NoError(t, err)
	_, _ = e.raw(t, "POST", "/v1/verbs/STATUS", "")
	_, _ = e.raw(t, "POST", "/v1/verbs/status", `{"actor":`)

	logs := e.log.String()
	require.NotEmpty(t, logs)
	for _, path := range []string{e.pveKeyPath, e.devvmPath} {
		pem, err := os.ReadFile(path)
		require.NoError(t, err)
		for _, line := range strings.Split(string(pem), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				assert.NotContains(t, logs, line, "a line of %s appears in the logs", path)
			}
		}
		raw, err := ssh.ParseRawPrivateKey(pem)
		require.NoError(t, err)
		seed := rawSeed(t, raw)
		for _, enc := range []string{
			base64.StdEncoding.EncodeToString(seed),
			base64.RawStdEncoding.EncodeToString(seed),
			strings.ToLower(hexString(seed)),
		} {
			assert.NotContains(t, logs, enc[:16])
		}
	}
}

// TestRefusalsAreCounted: every refusal is counted under a fixed label, so
// hostile input never becomes a label value.
func TestRefusalsAreCounted(t *testing.T) {
	e := newSimEnv(t, options{})
	_, _ = e.raw(t, "POST", "/v1/verbs/status%3Breboot", "")
	_, _ = e.raw(t, "POST", "/v1/verbs/%24(id)", "")
	got := series(t, e, "keyholder_verbs_total")
	assert.Len(t, got, 1)
	assert.Equal(t, 2.0, got["invalid/refused"].GetCounter().GetValue())
}

// TestHandlerOutsideSocketRefusesAll is the attack of the verb API being
// mounted somewhere without peer credentials (say, by mistake on a TCP
// listener): with no SO_PEERCRED every request is refused, and nothing is
// dialled.
func TestHandlerOutsideSocketRefusesAll(t *testing.T) {
	e := newSimEnv(t, options{})
	srv := httptest.NewServer(e.kh.Handler())
	defer srv.Close()
	for _, c := range []struct{ method, path string }{
		{"GET", "/v1/healthz"}, {"GET", "/v1/verbs"}, {"GET", "/metrics"}, {"POST", "/v1/verbs/reset"},
	} {
		req, err := http.NewRequest(c.method, srv.URL+c.path, nil)
		require.NoError(t, err)
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, c.path)
	}
	assert.Zero(t, e.sim.Connections())
	assert.Empty(t, e.vm.Calls())
}

// Attack: run verbs side by side by the hundred, each a root login and qm
// processes on the Proxmox host and up to 1 MiB of output held here, to
// load the hypervisor or exhaust the keyholder's memory. Past
// MaxConcurrentVerbs a verb is refused at once with 429 and opens no SSH
// connection.
func TestConcurrentVerbsAreBounded(t *testing.T) {
	e := newSimEnv(t, options{})
	release := e.vm.Block()
	defer release()
	errs := make(chan error, keyholder.MaxConcurrentVerbs)
	for range keyholder.MaxConcurrentVerbs {
		go func() {
			_, err := e.client.Run(context.Background(), "status", "")
			errs <- err
		}()
		<-e.vm.Waiting() // held inside qm on the Proxmox host
	}
	conns := e.sim.Connections()
	status, body := e.rawWithin(t, 5*time.Second, "POST", "/v1/verbs/forensics", "")
	assert.Equal(t, http.StatusTooManyRequests, status)
	assert.Contains(t, errorOf(t, body), "too many verbs running")
	assert.Equal(t, conns, e.sim.Connections(), "the refusal opens no SSH connection")

	release()
	for range keyholder.MaxConcurrentVerbs {
		assert.NoError(t, <-errs)
	}
	_, err := e.client.Run(context.Background(), "status", "")
	assert.NoError(t, err, "the slots are free again")
}
