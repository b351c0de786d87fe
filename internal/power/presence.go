package power

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/uuid"
	"breakglass/internal/verbs"
)

// Presencer is the keyholder's challenge API as the web relays it;
// *ipc.Client in the web. A Keyholder without it issues no challenge.
type Presencer interface {
	Challenge(ctx context.Context, req ipc.ChallengeRequest) (ipc.Challenge, error)
}

// ErrNoPresencer: the keyholder client cannot issue challenges.
var ErrNoPresencer = errors.New("the keyholder client cannot issue presence challenges")

// presenceCacheTTL is how long the keyholder's presence mode is remembered.
const presenceCacheTTL = 10 * time.Second

// RequestOptions is the answer of the challenge routes: what the browser
// passes to navigator.credentials.get (binary fields base64url).
type RequestOptions struct {
	ChallengeID string          `json:"challenge_id"`
	PublicKey   PublicKeyParams `json:"publicKey"`
}

// PublicKeyParams is PublicKeyCredentialRequestOptions, base64url-encoded.
type PublicKeyParams struct {
	Challenge        string           `json:"challenge"`
	RPID             string           `json:"rpId"`
	AllowCredentials []CredentialDesc `json:"allowCredentials"`
	UserVerification string           `json:"userVerification"`
	Timeout          int              `json:"timeout"`
}

// CredentialDesc is one allowCredentials entry.
type CredentialDesc struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// RequestOptionsOf turns a keyholder challenge into the browser's options.
func RequestOptionsOf(c ipc.Challenge) RequestOptions {
	allow := []CredentialDesc{}
	for _, id := range c.CredentialIDs {
		allow = append(allow, CredentialDesc{Type: "public-key", ID: id})
	}
	return RequestOptions{ChallengeID: c.ChallengeID, PublicKey: PublicKeyParams{
		Challenge: c.Challenge, RPID: c.RPID, AllowCredentials: allow,
		UserVerification: "required", Timeout: 60000,
	}}
}

// ChallengeRequest is the optional body of POST /api/vm/{verb}/challenge.
type ChallengeRequest struct {
	Args []string `json:"args,omitempty"`
}

// presenceMode remembers the keyholder's presence mode.
type presenceMode struct {
	mu       sync.Mutex
	required bool
	at       time.Time
}

// PresenceRequired reports whether the keyholder requires operator
// presence, from its verb list (cached briefly). When it cannot be asked,
// the answer is yes: the safe assumption.
func (s *Service) PresenceRequired(ctx context.Context) bool {
	s.presence.mu.Lock()
	if !s.presence.at.IsZero() && s.now().Sub(s.presence.at) < presenceCacheTTL {
		defer s.presence.mu.Unlock()
		return s.presence.required
	}
	s.presence.mu.Unlock()
	list, err := s.kh.Verbs(ctx)
	if err != nil {
		return true
	}
	s.presence.mu.Lock()
	defer s.presence.mu.Unlock()
	s.presence.required = list.Presence != "off"
	s.presence.at = s.now()
	return s.presence.required
}

// challenge asks the keyholder for a challenge bound to verb and args.
func (s *Service) challenge(ctx context.Context, verb string, args []string, actor string) (RequestOptions, error) {
	p, ok := s.kh.(Presencer)
	if !ok {
		return RequestOptions{}, ErrNoPresencer
	}
	c, err := p.Challenge(ctx, ipc.ChallengeRequest{Verb: verb, Args: args, Actor: actor})
	if err != nil {
		return RequestOptions{}, err
	}
	return RequestOptionsOf(c), nil
}

// serveChallenge answers POST /api/vm/{verb}/challenge: the WebAuthn
// request options for a keyholder challenge bound to this verb (and argv).
func (s *Service) serveChallenge(w http.ResponseWriter, r *http.Request, p wire.Principal) {
	verb := mux.Vars(r)["verb"]
	v, err := verbs.Parse(verb)
	if err != nil {
		fail(w, http.StatusBadRequest, wire.CodeInvalidVerb, err.Error())
		return
	}
	var req ChallengeRequest
	// The argv rides in the challenge's body as in the verb's: its cap.
	if err := wire.ReadJSON(w, r, v.MaxBody, &req, true); err != nil {
		wire.WriteError(w, err)
		return
	}
	opts, err := s.challenge(r.Context(), verb, req.Args, Actor{Kind: Operator, Name: p.Name}.keyholderName(""))
	if err != nil {
		wire.WriteError(w, runError(err))
		return
	}
	wire.WriteJSON(w, http.StatusOK, opts)
}

// serveApprovalChallenge answers POST
// /api/sessions/{id}/approvals/{aid}/challenge: the request options for a
// challenge bound to the pending approval's verb.
func (s *Service) serveApprovalChallenge(w http.ResponseWriter, r *http.Request, p wire.Principal) {
	sid, aid := mux.Vars(r)["id"], mux.Vars(r)["aid"]
	if !uuid.Valid(sid) || !uuid.Valid(aid) {
		fail(w, http.StatusNotFound, wire.CodeNotFound, ErrNotFound.Error())
		return
	}
	verb, args, err := s.pendingVerb(sid, aid)
	switch {
	case errors.Is(err, ErrNotFound):
		fail(w, http.StatusNotFound, wire.CodeNotFound, err.Error())
		return
	case errors.Is(err, ErrResolved):
		fail(w, http.StatusConflict, wire.CodeResolved, err.Error())
		return
	}
	opts, err := s.challenge(r.Context(), string(verb), args, Actor{Kind: Operator, Name: p.Name}.keyholderName(sid))
	if err != nil {
		wire.WriteError(w, runError(err))
		return
	}
	wire.WriteJSON(w, http.StatusOK, opts)
}

// pendingVerb returns the verb and argv of a pending approval.
func (s *Service) pendingVerb(sessionID, approvalID string) (verbs.Name, []string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.approvals[approvalID]
	if !ok || a.sessionID != sessionID {
		return "", nil, ErrNotFound
	}
	if a.state != event.ApprovalPending {
		return "", nil, ErrResolved
	}
	return a.verb, a.args, nil
}
