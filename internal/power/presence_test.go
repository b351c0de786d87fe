package power

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/ipc"
)

const presenceJSON = `{"challenge_id":"cid-reset","credential_id":"Y3JlZA","client_data_json":"e30","authenticator_data":"AA","signature":"AA"}`

// The challenge route answers the browser's WebAuthn request options for
// a keyholder challenge bound to the verb.
func TestChallengeRouteGivesRequestOptions(t *testing.T) {
	s := newServer(t, Config{})
	s.kh.presence = "required"
	r := s.do(t, "POST", "/api/vm/reset/challenge", asAlice, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	var opts RequestOptions
	require.NoError(t, json.Unmarshal([]byte(r.body), &opts))
	assert.Equal(t, RequestOptions{ChallengeID: "cid-reset", PublicKey: PublicKeyParams{
		Challenge: "Y2hhbGxlbmdl", RPID: "localhost",
		AllowCredentials: []CredentialDesc{{Type: "public-key", ID: "Y3JlZA"}},
		UserVerification: "required", Timeout: 60000,
	}}, opts)
	assert.Equal(t, []ipc.ChallengeRequest{{Verb: "reset", Actor: "operator:alice"}}, s.kh.challenges)

	assert.Equal(t, http.StatusBadRequest, s.do(t, "POST", "/api/vm/rm/challenge", asAlice, "").status)
	assert.Equal(t, http.StatusUnauthorized, s.do(t, "POST", "/api/vm/reset/challenge", nil, "").status)
}

// The operator's presence goes to the keyholder with the verb; a refusal
// comes back with its code and the keyholder's reason.
func TestOperatorPresenceRelayed(t *testing.T) {
	s := newServer(t, Config{})
	r := s.do(t, "POST", "/api/vm/reset", asAlice, `{"presence":`+presenceJSON+`}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	calls := s.kh.Calls()
	require.Len(t, calls, 1)
	require.NotNil(t, calls[0].presence)
	assert.Equal(t, "cid-reset", calls[0].presence.ChallengeID)

	s.kh.err = &ipc.StatusError{Status: http.StatusForbidden, Message: "operator presence: the challenge expired; ask for a new one", Reason: "challenge_expired"}
	r = s.do(t, "POST", "/api/vm/reset", asAlice, `{"presence":`+presenceJSON+`}`)
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, wire.ErrorBody{Error: "operator presence: the challenge expired; ask for a new one", Code: wire.CodePresence, Reason: "challenge_expired"}, r.errorBody(t))
}

// Approving needs presence when the keyholder requires it; denying never
// does. The approval's challenge is bound to the pending verb, and the
// presence given with the approval runs the agent's verb.
func TestApprovalNeedsPresence(t *testing.T) {
	s := newServer(t, Config{})
	s.kh.presence = "required"
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tok}, "")
	id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	path := "/api/sessions/" + sessionA + "/approvals/" + id

	r := s.do(t, "POST", path, asAlice, `{"approve":true}`)
	assert.Equal(t, http.StatusForbidden, r.status)
	assert.Equal(t, wire.CodePresenceRequired, r.errorBody(t).Code)
	assert.Empty(t, s.kh.Calls(), "a refused approval stays pending")

	r = s.do(t, "POST", path+"/challenge", asAlice, "")
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Equal(t, []ipc.ChallengeRequest{{Verb: "reset", Actor: "operator:alice"}}, s.kh.challenges)

	r = s.do(t, "POST", path, asAlice, `{"approve":true,"presence":`+presenceJSON+`}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	require.Equal(t, http.StatusOK, waitReply(t, pve).status)
	calls := s.kh.Calls()
	require.Len(t, calls, 1)
	assert.Equal(t, "agent:"+sessionA, calls[0].actor)
	require.NotNil(t, calls[0].presence, "the operator's presence runs the agent's verb")

	assert.Equal(t, http.StatusConflict, s.do(t, "POST", path+"/challenge", asAlice, "").status)
}

func TestDenyNeedsNoPresence(t *testing.T) {
	s := newServer(t, Config{})
	s.kh.presence = "required"
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	pve := s.asyncDo(t, "POST", wire.AgentVerbPrefix+"stop", map[string]string{wire.TokenHeader: tok}, "")
	id := s.tr.waitApproval(t, event.ApprovalPending).ApprovalID
	r := s.do(t, "POST", "/api/sessions/"+sessionA+"/approvals/"+id, asAlice, `{"approve":false}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	assert.Equal(t, http.StatusForbidden, waitReply(t, pve).status)
	assert.Empty(t, s.kh.Calls())
}

// The agent never signs: presence sent on the agent's endpoint is dropped
// before the keyholder is asked.
func TestAgentCarriesNoPresence(t *testing.T) {
	s := newServer(t, Config{Policy: PolicyAllow})
	tok, revoke := s.svc.tokens.Issue(sessionA)
	defer revoke()
	r := s.do(t, "POST", wire.AgentVerbPrefix+"reset", map[string]string{wire.TokenHeader: tok}, `{"presence":`+presenceJSON+`}`)
	require.Equal(t, http.StatusOK, r.status, r.body)
	calls := s.kh.Calls()
	require.Len(t, calls, 1)
	assert.Nil(t, calls[0].presence, "presence on the agent's endpoint is dropped")
}
