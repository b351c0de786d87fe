package power

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api"
	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/session"
	"breakglass/internal/uuid"
)

// identityHeader is the api layer's authentication in these tests: the
// tests' client stands in for the edge proxy, on loopback.
const identityHeader = api.IdentityHeader

// server runs the package's routes mounted in the real api server, on a
// loopback httptest server.
type server struct {
	*fixture
	url    string
	client *http.Client
}

func newServer(t *testing.T, cfg Config) *server {
	t.Helper()
	f := newFixture(t, cfg)
	mgr, err := session.New(session.Config{Dir: t.TempDir(), Runner: idleRunner{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mgr.Close() })
	h, err := api.New(api.Config{
		Sessions:       mgr,
		Keyholder:      apiKeyholder{},
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Routes:         slices.Concat(f.svc.Routes(), f.svc.AgentRoutes()),
	})
	require.NoError(t, err)
	srv := httptest.NewServer(h.Handler())
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		srv.Close()
	})
	return &server{fixture: f, url: srv.URL, client: client}
}

type reply struct {
	status int
	body   string
}

// errorBody decodes an error answer.
func (r reply) errorBody(t *testing.T) wire.ErrorBody {
	t.Helper()
	var b wire.ErrorBody
	require.NoError(t, json.Unmarshal([]byte(r.body), &b), r.body)
	return b
}

func (s *server) do(t *testing.T, method, path string, header map[string]string, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return reply{resp.StatusCode, string(b)}
}

// asyncDo sends a request in the background.
func (s *server) asyncDo(t *testing.T, method, path string, header map[string]string, body string) <-chan reply {
	ch := make(chan reply, 1)
	go func() {
		req, err := http.NewRequest(method, s.url+path, strings.NewReader(body))
		if err != nil {
			ch <- reply{status: -1, body: err.Error()}
			return
		}
		for k, v := range header {
			req.Header.Set(k, v)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			ch <- reply{status: -1, body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- reply{resp.StatusCode, string(b)}
	}()
	return ch
}

func waitReply(t *testing.T, ch <-chan reply) reply {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10s")
		return reply{}
	}
}

var asAlice = map[string]string{identityHeader: "alice"}

func TestListVerbs(t *testing.T) {
	s := newServer(t, Config{})
	r := s.do(t, "GET", "/api/vm", asAlice, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	var list VerbList
	require.NoError(t, json.Unmarshal([]byte(r.body), &list))
	assert.Equal(t, 102, list.VMID)
	assert.Len(t, list.Verbs, 6)

	assert.Equal(t, http.StatusUnauthorized, s.do(t, "GET", "/api/vm", nil, "").status)

	s.kh.err = ErrUnreachable
	r = s.do(t, "GET", "/api/vm", asAlice, "")
	assert.Equal(t, http.StatusServiceUnavailable, r.status)
	assert.Equal(t, wire.CodeKeyholderDown, r.errorBody(t).Code)
	assert.Contains(t, r.errorBody(t).Error, "keyholder unreachable")
}

func TestOperatorVerbGoesIntoTheSessionTranscript(t *testing.T) {
	s := newServer(t, Config{})
	r := s.do(t, "POST", "/api/vm/reset", asAlice, `{"session_id":"`+sessionA+`"}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	var res Result
	require.NoError(t, json.Unmarshal([]byte(r.body), &res))
	assert.Equal(t, Result{Verb: "reset", VMID: 102, Output: "ran reset\n", DurationMS: 7}, res)

	assert.Equal(t, []fakeCall{{verb: "reset", actor: "operator:alice"}}, s.kh.Calls())
	events := s.tr.Events(sessionA)
	require.Equal(t, []string{"verb:reset:alice"}, summary(t, events))
	v := decode[event.VerbData](t, events[0])
	assert.Equal(t, "ran reset\n", v.Output)
	assert.Empty(t, s.tr.Events(sessionB))
}

func TestOperatorVerbWithoutBody(t *testing.T) {
	s := newServer(t, Config{})
	r := s.do(t, "POST", "/api/vm/status", asAlice, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Zero(t, s.tr.All())
}

func TestOperatorVerbRelaysTheKeyholder(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		status int
		code   wire.Code
		msg    string
	}{
		{"busy", &ipc.StatusError{Status: 409, Message: "a mutating verb is already running"}, 409, wire.CodeBusy, "a mutating verb is already running"},
		{"host-key", &ipc.StatusError{Status: 502, Message: "host key mismatch"}, 502, wire.CodeSSH, "host key mismatch"},
		{"timeout", &ipc.StatusError{Status: 504, Message: "timed out after 120s"}, 504, wire.CodeTimeout, "timed out after 120s"},
		{"down", ErrUnreachable, 503, wire.CodeKeyholderDown, "keyholder unreachable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Config{})
			s.kh.err = tc.err
			r := s.do(t, "POST", "/api/vm/stop", asAlice, `{"session_id":"`+sessionA+`"}`)
			assert.Equal(t, tc.status, r.status)
			assert.Equal(t, tc.code, r.errorBody(t).Code)
			assert.Contains(t, r.errorBody(t).Error, tc.msg)
			assert.Equal(t, []string{"verb:stop:alice:error"}, summary(t, s.tr.Events(sessionA)))
		})
	}
	t.Run("nonzero-exit-is-200", func(t *testing.T) {
		s := newServer(t, Config{})
		s.kh.exitCode = 3
		r := s.do(t, "POST", "/api/vm/start", asAlice, "")
		require.Equal(t, http.StatusOK, r.status)
		assert.Contains(t, r.body, `"exit_code":3`)
	})
}

func TestOperatorBodies(t *testing.T) {
	tests := []struct {
		name string
		body string
		want string
		// status is 400 unless set.
		status int
		code   wire.Code
	}{
		{name: "malformed", body: `{"session_id":`, want: "malformed JSON"},
		{name: "not-object", body: `[1]`, want: "malformed JSON"},
		{name: "unknown-field", body: `{"session":"x"}`, want: "malformed JSON"},
		{name: "trailing", body: `{} {}`, want: "data after the object"},
		{name: "oversized", body: `{"session_id":"` + strings.Repeat("a", 8<<10) + `"}`, want: "larger than",
			status: http.StatusRequestEntityTooLarge, code: wire.CodeBodyTooLarge},
		{name: "bad-session", body: `{"session_id":"../../etc/passwd"}`, want: "UUID v4"},
		{name: "session-v1", body: `{"session_id":"0b7e4c52-8c1a-1d0e-9f3b-2a6d5e7f8a91"}`, want: "UUID v4"},
	}
	s := newServer(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.status == 0 {
				tc.status, tc.code = http.StatusBadRequest, wire.CodeBadRequest
			}
			r := s.do(t, "POST", "/api/vm/status", asAlice, tc.body)
			assert.Equal(t, tc.status, r.status)
			assert.Contains(t, r.errorBody(t).Error, tc.want)
			assert.Equal(t, tc.code, r.errorBody(t).Code)
		})
	}
	assert.Empty(t, s.kh.Calls())
}

func TestOperatorNeedsIdentity(t *testing.T) {
	s := newServer(t, Config{})
	r := s.do(t, "POST", "/api/vm/status", nil, "")
	assert.Equal(t, http.StatusUnauthorized, r.status)
	assert.Empty(t, s.kh.Calls())
}

func TestApprovalRoute(t *testing.T) {
	s := newServer(t, Config{})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tok}, "")
	id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	path := "/api/sessions/" + sessionA + "/approvals/" + id

	tests := []struct {
		name   string
		path   string
		header map[string]string
		body   string
		status int
	}{
		{"no-identity", path, nil, `{"approve":true}`, 401},
		{"no-body", path, asAlice, ``, 400},
		{"no-approve-field", path, asAlice, `{}`, 400},
		{"not-bool", path, asAlice, `{"approve":"yes"}`, 400},
		{"unknown-approval", "/api/sessions/" + sessionA + "/approvals/" + uuid.New(), asAlice, `{"approve":true}`, 404},
		{"other-session", "/api/sessions/" + sessionB + "/approvals/" + id, asAlice, `{"approve":true}`, 404},
		{"bad-session", "/api/sessions/x/approvals/" + id, asAlice, `{"approve":true}`, 404},
		{"bad-approval", "/api/sessions/" + sessionA + "/approvals/x", asAlice, `{"approve":true}`, 404},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.status, s.do(t, "POST", tc.path, tc.header, tc.body).status)
		})
	}
	assert.Empty(t, s.kh.Calls(), "nothing above resolved the approval")

	r := s.do(t, "POST", path, asAlice, `{"approve":true}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	got := waitReply(t, pve)
	require.Equal(t, http.StatusOK, got.status, got.body)
	assert.Contains(t, got.body, `"output":"ran reset\n"`)
	assert.Equal(t, "alice", s.tr.waitApproval(t, event.ApprovalApproved).By, "the resolved approval names who approved")
	assert.Equal(t, http.StatusConflict, s.do(t, "POST", path, asAlice, `{"approve":false}`).status)
}

func TestAgentEndpoint(t *testing.T) {
	tests := []struct {
		name   string
		policy Policy
		verb   string
		answer *bool // the operator's answer, when an approval is expected
		status int
		code   wire.Code
		calls  int
		events []string
	}{
		{"status", PolicyApprove, "status", nil, 200, "", 1, []string{"verb:status:agent"}},
		{"approve-yes", PolicyApprove, "reset", ptr(true), 200, "", 1, []string{"approval:pending", "approval:approved", "verb:reset:agent"}},
		{"approve-no", PolicyApprove, "reset", ptr(false), 403, wire.CodeDenied, 0, []string{"approval:pending", "approval:denied", "verb:reset:agent:error"}},
		{"deny", PolicyDeny, "stop", nil, 403, wire.CodeRefused, 0, []string{"verb:stop:agent:error"}},
		{"allow", PolicyAllow, "cycle", nil, 200, "", 1, []string{"verb:cycle:agent"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, Config{Policy: tc.policy})
			tok, revoke := s.svc.tokens.Issue(sessionA)
			defer revoke()
			pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+tc.verb, map[string]string{wire.TokenHeader: tok}, `{"session_id":"`+sessionA+`"}`)
			if tc.answer != nil {
				id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
				require.NoError(t, s.svc.Resolve(sessionA, id, *tc.answer))
			}
			r := waitReply(t, pve)
			assert.Equal(t, tc.status, r.status, r.body)
			if tc.code != "" {
				assert.Equal(t, tc.code, r.errorBody(t).Code)
			}
			assert.Len(t, s.kh.Calls(), tc.calls)
			assert.Equal(t, tc.events, summary(t, s.tr.Events(sessionA)))
		})
	}
}

func TestAgentApprovalExpires(t *testing.T) {
	s := newServer(t, Config{ApprovalTimeout: time.Millisecond})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	r := s.do(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tok}, "")
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, wire.CodeExpired, r.errorBody(t).Code)
	assert.Empty(t, s.kh.Calls())
}

func TestAgentTokenRejected(t *testing.T) {
	s := newServer(t, Config{Policy: PolicyAllow})
	live, revokeLive := s.svc.tokens.Issue(sessionA)
	defer revokeLive()
	dead, revokeDead := s.svc.tokens.Issue(sessionA)
	revokeDead()
	tests := []struct {
		name   string
		header map[string]string
		body   string
	}{
		{"none", nil, ""},
		{"empty", map[string]string{wire.TokenHeader: ""}, ""},
		{"finished-turn", map[string]string{wire.TokenHeader: dead}, ""},
		{"other-session", map[string]string{wire.TokenHeader: live}, `{"session_id":"` + sessionB + `"}`},
		{"garbage", map[string]string{wire.TokenHeader: strings.Repeat("A", 43)}, ""},
		{"operator-identity", map[string]string{identityHeader: "alice"}, ""},
		{"bearer", map[string]string{"Authorization": "Bearer " + live}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := s.do(t, "POST", wire.AgentVerbPrefix+"status", tc.header, tc.body)
			assert.Equal(t, http.StatusUnauthorized, r.status)
			assert.Equal(t, wire.CodeToken, r.errorBody(t).Code)
		})
	}
	assert.Empty(t, s.kh.Calls(), "the keyholder saw nothing")
	assert.Zero(t, s.tr.All())
}

func TestAgentRequestEndsWithItsTurn(t *testing.T) {
	s := newServer(t, Config{})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+"stop", map[string]string{wire.TokenHeader: tok}, "")
	id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	revoke()
	r := waitReply(t, pve)
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, wire.CodeExpired, r.errorBody(t).Code)
	assert.ErrorIs(t, s.svc.Resolve(sessionA, id, true), ErrResolved, "approving after the turn ended runs nothing")
	assert.Empty(t, s.kh.Calls())
}

func TestAgentRequestLiftsTheServersWriteTimeout(t *testing.T) {
	f := newFixture(t, Config{})
	r := mux.NewRouter()
	for _, rt := range f.svc.AgentRoutes() {
		if rt.Open != nil {
			r.HandleFunc(rt.Path, rt.Open).Methods(rt.Method)
		}
	}
	srv := httptest.NewUnstartedServer(r)
	// A write timeout far shorter than the approval wait below.
	srv.Config.WriteTimeout = 50 * time.Millisecond
	srv.Start()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	tok, revoke := f.svc.tokens.Issue(sessionA)
	defer revoke()
	ch := make(chan reply, 1)
	go func() {
		req, _ := http.NewRequest("POST", srv.URL+wire.AgentVerbPrefix+"reset", nil)
		req.Header.Set(wire.TokenHeader, tok)
		resp, err := client.Do(req)
		if err != nil {
			ch <- reply{-1, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		ch <- reply{resp.StatusCode, string(b)}
	}()
	id := f.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	// Wait past the server's write timeout before answering, with a timer
	// rather than a sleep: the point is that time passes.
	<-time.After(200 * time.Millisecond)
	require.NoError(t, f.svc.Resolve(sessionA, id, true))
	got := waitReply(t, ch)
	assert.Equal(t, http.StatusOK, got.status, got.body)
}

func TestUnknownRoutesAndMethods(t *testing.T) {
	s := newServer(t, Config{})
	assert.Equal(t, http.StatusNotFound, s.do(t, "GET", "/api/vm/status", asAlice, "").status, "nothing runs on GET")
	assert.Equal(t, http.StatusUnauthorized, s.do(t, "GET", wire.AgentVerbPrefix+"status", nil, "").status, "not the agent's route: the operator's 401")
	assert.Empty(t, s.kh.Calls())
}

func ptr[T any](v T) *T { return &v }
