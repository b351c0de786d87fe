package power

// The package's routes mounted in the real api server the way cmd/web mounts
// them (api.Config.Routes): operator routes behind its authentication and
// same-origin check, the agent's endpoint open.

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api"
	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/session"
	"breakglass/internal/uuid"
)

// apiKeyholder answers the api's probes.
type apiKeyholder struct{}

func (apiKeyholder) Healthz(context.Context) error           { return nil }
func (apiKeyholder) Metrics(context.Context) ([]byte, error) { return nil, ErrUnreachable }

type mounted struct {
	*fixture
	url     string
	mgr     *session.Manager
	session string
	client  *http.Client
}

func mount(t *testing.T, cfg Config, trusted []netip.Prefix) *mounted {
	t.Helper()
	mgr, err := session.New(session.Config{Dir: t.TempDir(), Runner: idleRunner{}})
	require.NoError(t, err)
	t.Cleanup(func() { _ = mgr.Close() })
	info, err := mgr.Create()
	require.NoError(t, err)

	if trusted == nil {
		// The tests' client stands in for the edge proxy, on loopback.
		trusted = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
	}
	f := newFixture(t, cfg)
	f.svc.transcript = mgr
	srv, err := api.New(api.Config{
		Sessions:       mgr,
		Keyholder:      apiKeyholder{},
		TrustedProxies: trusted,
		Routes:         slices.Concat(f.svc.Routes(), f.svc.AgentRoutes()),
	})
	require.NoError(t, err)
	hs := httptest.NewServer(srv.Handler())
	client := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(func() {
		client.CloseIdleConnections()
		hs.Close()
	})
	return &mounted{fixture: f, url: hs.URL, mgr: mgr, session: info.ID, client: client}
}

func (m *mounted) post(t *testing.T, path string, header map[string]string, body string) int {
	t.Helper()
	req, err := http.NewRequest("POST", m.url+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := m.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	return resp.StatusCode
}

// browser is what the SSO proxy forwards from the operator's phone.
var browser = map[string]string{api.IdentityHeader: "alice", "Sec-Fetch-Site": "same-origin"}

func TestMountedOperatorVerbGoesIntoTheTranscript(t *testing.T) {
	m := mount(t, Config{}, nil)
	status := m.post(t, "/api/vm/reset", browser, `{"session_id":"`+m.session+`"}`)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, []fakeCall{{verb: "reset", actor: "operator:alice"}}, m.kh.Calls())

	sub, err := m.mgr.Attach(m.session, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.Len(t, slices.Collect(sub.Replay()), 1)
	v := decode[event.VerbData](t, slices.Collect(sub.Replay())[0])
	assert.Equal(t, "reset", v.Verb)
	assert.Equal(t, "alice", v.Actor)
}

func TestMountedOperatorRoutesNeedTheApisAuth(t *testing.T) {
	m := mount(t, Config{}, nil)
	tests := []struct {
		name   string
		header map[string]string
		status int
	}{
		{"no-identity", nil, http.StatusUnauthorized},
		{"cross-site", map[string]string{api.IdentityHeader: "alice", "Sec-Fetch-Site": "cross-site"}, http.StatusForbidden},
		{"sibling-app", map[string]string{api.IdentityHeader: "alice", "Sec-Fetch-Site": "same-site"}, http.StatusForbidden},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.status, m.post(t, "/api/vm/reset", tc.header, ""))
			assert.Equal(t, tc.status, m.post(t, "/api/sessions/"+m.session+"/approvals/"+uuid.New(), tc.header, `{"approve":true}`))
		})
	}
	assert.Empty(t, m.kh.Calls())
}

func TestMountedAgentEndpointTakesOnlyTheToken(t *testing.T) {
	m := mount(t, Config{Policy: PolicyAllow}, nil)
	assert.Equal(t, http.StatusUnauthorized, m.post(t, wire.AgentVerbPrefix+"status", browser, ""), "the operator's identity is not a token")
	tok, revoke := m.svc.tokens.Issue(m.session)
	assert.Equal(t, http.StatusOK, m.post(t, wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tok}, ""))
	revoke()
	assert.Equal(t, http.StatusUnauthorized, m.post(t, wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tok}, ""))
	assert.Len(t, m.kh.Calls(), 1)
}

// The agent runs in the web's container: a request it makes comes from
// loopback. With BREAKGLASS_TRUSTED_PROXIES empty (the default: the header
// is off) or naming only the edge proxy, the identity header it forges is
// not believed, so it cannot run a verb as the operator or approve its own.
func TestMountedAgentForgingTheOperatorFromLoopback(t *testing.T) {
	for name, trusted := range map[string][]netip.Prefix{
		"default-none-trusted": {},
		"edge-only":            {netip.MustParsePrefix("10.42.0.0/16")},
	} {
		t.Run(name, func(t *testing.T) {
			m := mount(t, Config{}, trusted)
			forged := map[string]string{api.IdentityHeader: "alice", "Sec-Fetch-Site": "same-origin"}
			assert.Equal(t, http.StatusUnauthorized, m.post(t, "/api/vm/reset", forged, ""))
			assert.Equal(t, http.StatusUnauthorized, m.post(t, "/api/sessions/"+m.session+"/approvals/"+uuid.New(), forged, `{"approve":true}`))
			assert.Empty(t, m.kh.Calls())
		})
	}
}

func TestMountedEncodedVerbsNeverReachTheKeyholder(t *testing.T) {
	m := mount(t, Config{Policy: PolicyAllow}, nil)
	tok, revoke := m.svc.tokens.Issue(m.session)
	defer revoke()
	for _, p := range []string{"status%20", "status%3Breboot", "%2e%2e%2fstatus", "..%2fstatus", "STATUS", "reset%0a", "status/", "./status"} {
		assert.NotEqual(t, http.StatusOK, m.post(t, "/api/vm/"+p, browser, ""), p)
		assert.NotEqual(t, http.StatusOK, m.post(t, wire.AgentVerbPrefix+p, map[string]string{wire.TokenHeader: tok}, ""), p)
	}
	assert.Empty(t, m.kh.Calls())
}
