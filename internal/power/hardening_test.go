package power

// One test per security property of the verb path, each named for the
// attack it blocks.

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/uuid"
)

// The agent sends the operator's identity header to its own endpoint, hoping
// to run a mutating verb as the operator (no approval). It stays the agent:
// without a token it is refused, with one it is the agent under the policy.
func TestHardeningAgentForgingTheOperator(t *testing.T) {
	s := newServer(t, Config{Policy: PolicyDeny})
	forged := map[string]string{identityHeader: "alice"}
	r := s.do(t, "POST", wire.AgentVerbPrefix+"reset", forged, `{"session_id":"`+sessionA+`"}`)
	assert.Equal(t, http.StatusUnauthorized, r.status)

	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	forged[wire.TokenHeader] = tok
	r = s.do(t, "POST", wire.AgentVerbPrefix+"reset", forged, "")
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, wire.CodeRefused, r.errorBody(t).Code, "the policy for agents applies, whatever the headers say")
	assert.Equal(t, []string{"verb:reset:agent:error"}, summary(t, s.tr.Events(sessionA)))
	assert.Empty(t, s.kh.Calls())

	// The other way round: a request carrying a turn token is never the
	// operator, even with the identity header, so the agent cannot run
	// verbs or approve its own through the operator's routes.
	id := uuid.New()
	for _, path := range []string{"/api/vm/reset", "/api/sessions/" + sessionA + "/approvals/" + id} {
		r := s.do(t, "POST", path, forged, `{"approve":true}`)
		assert.Equal(t, http.StatusForbidden, r.status, path)
		assert.Equal(t, wire.CodeForbidden, r.errorBody(t).Code)
	}
	assert.Empty(t, s.kh.Calls())
}

// A token captured during a turn is replayed after the turn ended.
func TestHardeningReplayingADeadToken(t *testing.T) {
	s := newServer(t, Config{Policy: PolicyAllow})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	r := s.do(t, "POST", wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tok}, "")
	require.Equal(t, http.StatusOK, r.status, "the token works while its turn runs")
	revoke()
	for _, verb := range []string{"status", "reset"} {
		r := s.do(t, "POST", wire.AgentVerbPrefix+verb, map[string]string{wire.TokenHeader: tok}, "")
		assert.Equal(t, http.StatusUnauthorized, r.status)
	}
	assert.Len(t, s.kh.Calls(), 1, "only the request made during the turn reached the keyholder")
}

// The agent of session A uses its token to act in session B, or to answer
// session B's approval through A.
func TestHardeningCrossSessionToken(t *testing.T) {
	s := newServer(t, Config{})
	tokA, revokeA := s.svc.tokens.Issue(sessionA)
	defer revokeA()
	r := s.do(t, "POST", wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tokA}, `{"session_id":"`+sessionB+`"}`)
	assert.Equal(t, http.StatusUnauthorized, r.status)
	assert.Empty(t, s.kh.Calls())
	assert.Zero(t, s.tr.All())

	// B's pending approval cannot be answered under A's session id.
	tokB, revokeB := s.svc.tokens.Issue(sessionB)
	defer revokeB()
	pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tokB}, "")
	id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	r = s.do(t, "POST", "/api/sessions/"+sessionA+"/approvals/"+id, asAlice, `{"approve":true}`)
	assert.Equal(t, http.StatusNotFound, r.status)
	require.NoError(t, s.svc.Resolve(sessionB, id, false))
	assert.Equal(t, http.StatusForbidden, waitReply(t, pve).status)
	assert.Empty(t, s.kh.Calls())
}

// A verb smuggled through the URL (encoded spaces, separators, traversal,
// case) or through the body must never reach the keyholder.
func TestHardeningVerbInjection(t *testing.T) {
	s := newServer(t, Config{Policy: PolicyAllow})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	paths := []string{
		"status%20", "status%3Breboot", "status%0Areset", "reset%00", "%2e%2e%2fstatus",
		"STATUS", "Status", "status;reboot", "reset%20103", "stop%20--skiplock",
		"%24(id)", "status%2Freset", "destroy", "stat", "%E2%80%8Bstatus",
	}
	for _, p := range paths {
		t.Run(p, func(t *testing.T) {
			r := s.do(t, "POST", "/api/vm/"+p, asAlice, "")
			assert.NotEqual(t, http.StatusOK, r.status, "operator route")
			r = s.do(t, "POST", wire.AgentVerbPrefix+p, map[string]string{wire.TokenHeader: tok}, "")
			assert.NotEqual(t, http.StatusOK, r.status, "agent route")
		})
	}
	// The body carries no verb: fields other than session_id are refused.
	r := s.do(t, "POST", "/api/vm/status", asAlice, `{"verb":"reset"}`)
	assert.Equal(t, http.StatusBadRequest, r.status)
	assert.Empty(t, s.kh.Calls(), "no bad verb reached the keyholder")
	assert.Zero(t, s.tr.All())
}

// The agent tries to approve its own mutating verb by guessing approval ids:
// without the operator's identity it is refused, with a token it is refused,
// and a guessed id finds nothing.
func TestHardeningAgentApprovingItsOwnVerb(t *testing.T) {
	s := newServer(t, Config{})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tok}, "")
	id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	path := "/api/sessions/" + sessionA + "/approvals/" + id
	assert.Equal(t, http.StatusUnauthorized, s.do(t, "POST", path, nil, `{"approve":true}`).status)
	assert.Equal(t, http.StatusForbidden, s.do(t, "POST", path, map[string]string{wire.TokenHeader: tok}, `{"approve":true}`).status)
	assert.Equal(t, http.StatusNotFound, s.do(t, "POST", "/api/sessions/"+sessionA+"/approvals/"+uuid.New(), asAlice, `{"approve":true}`).status)
	assert.Empty(t, s.kh.Calls())
	require.NoError(t, s.svc.Resolve(sessionA, id, false))
	assert.Equal(t, http.StatusForbidden, waitReply(t, pve).status)
}

// Logs are read by more people than the pod: a token in them would let a
// reader act as the agent while the turn runs.
func TestHardeningTokenNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	logger := hclog.New(&hclog.LoggerOptions{Output: &buf, Level: hclog.Trace, JSONFormat: true})
	s := newServer(t, Config{Logger: logger, Policy: PolicyDeny})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	s.do(t, "POST", wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tok}, "")
	s.do(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tok}, "")
	s.do(t, "POST", wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tok}, `{"session_id":"`+sessionB+`"}`)
	revoke()
	s.do(t, "POST", wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: tok}, "")
	require.NotEmpty(t, buf.String())
	assert.Contains(t, buf.String(), "agent token rejected")
	assert.NotContains(t, buf.String(), tok)
	assert.NotContains(t, buf.String(), tok[:16])
	for _, e := range s.tr.Events(sessionA) {
		assert.NotContains(t, string(e.Data), tok[:16])
	}
}

// A guessed token of the right shape fails like any other, and the
// comparison covers every live token (no early exit on the first match).
func TestHardeningGuessedToken(t *testing.T) {
	s := newServer(t, Config{Policy: PolicyAllow})
	for i := 0; i < 4; i++ {
		_, revoke := s.svc.tokens.Issue(sessionA)
		defer revoke()
	}
	for _, guess := range []string{strings.Repeat("A", 43), strings.Repeat("_", 43), uuid.New() + "0000000"} {
		r := s.do(t, "POST", wire.AgentVerbPrefix+"status", map[string]string{wire.TokenHeader: guess}, "")
		assert.Equal(t, http.StatusUnauthorized, r.status)
	}
	assert.Empty(t, s.kh.Calls())
}
