package power

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/ipc"
	"breakglass/internal/uuid"
	"breakglass/internal/verbs"
)

// maxBody bounds every request body of this package but a verb's, whose cap
// is its own (verbs.Verb.MaxBody: guest-exec's argv rides in it).
const maxBody = 4 << 10

// writeSlack is added to a request's longest wait when the handler lifts the
// server's write deadline for it.
const writeSlack = 30 * time.Second

// Routes are the verb routes, for package api to mount:
//
//	GET  /api/vm                                      operator
//	GET  /api/vm/health                               operator
//	POST /api/vm/{verb}                               operator
//	GET  /api/sessions/{id}/images/{name}             operator (and HEAD)
//	POST /api/vm/{verb}/challenge                     operator
//	POST /api/sessions/{id}/approvals/{aid}           operator
//	POST /api/sessions/{id}/approvals/{aid}/challenge operator
//
// The agent's route is AgentRoutes: it is served on its own socket.
func (s *Service) Routes() []wire.Route {
	return []wire.Route{
		{Method: http.MethodGet, Path: "/api/vm", Operator: s.serveList},
		{Method: http.MethodGet, Path: "/api/vm/health", Operator: s.serveHealth},
		{Method: http.MethodPost, Path: "/api/vm/{verb}", Operator: s.serveOperatorVerb},
		{Method: http.MethodGet, Path: "/api/sessions/{id}/images/{name}", Operator: s.serveImage},
		{Method: http.MethodHead, Path: "/api/sessions/{id}/images/{name}", Operator: s.serveImage},
		{Method: http.MethodPost, Path: "/api/vm/{verb}/challenge", Operator: s.serveChallenge},
		{Method: http.MethodPost, Path: "/api/sessions/{id}/approvals/{aid}", Operator: s.serveApproval},
		{Method: http.MethodPost, Path: "/api/sessions/{id}/approvals/{aid}/challenge", Operator: s.serveApprovalChallenge},
	}
}

// AgentRoutes are the agent's: POST /api/agent/verbs/{verb}, an open route
// (the turn token is its only credential, and an operator identity on it
// counts for nothing), served on the agent's own `pve` socket.
func (s *Service) AgentRoutes() []wire.Route {
	return []wire.Route{{Method: http.MethodPost, Path: wire.AgentVerbPrefix + "{verb}", Open: s.serveAgentVerb}}
}

// serveList answers GET /api/vm with the keyholder's verb list.
func (s *Service) serveList(w http.ResponseWriter, r *http.Request, _ wire.Principal) {
	list, err := s.verbList(r.Context())
	if err != nil {
		s.log.Warn("list verbs", "error", err)
		wire.WriteError(w, runError(err))
		return
	}
	wire.WriteJSON(w, http.StatusOK, list)
}

// serveOperatorVerb answers POST /api/vm/{verb} (body optional
// {"session_id":…}): the operator runs a verb, and the keyholder's answer is
// relayed.
func (s *Service) serveOperatorVerb(w http.ResponseWriter, r *http.Request, p wire.Principal) {
	verb := mux.Vars(r)["verb"]
	v, err := verbs.Parse(verb)
	if err != nil {
		s.metrics.observe("", Operator, outcomeInvalid)
		fail(w, http.StatusBadRequest, wire.CodeInvalidVerb, err.Error())
		return
	}
	var req RunRequest
	if err := wire.ReadJSON(w, r, v.MaxBody, &req, true); err != nil {
		wire.WriteError(w, err)
		return
	}
	if req.SessionID != "" && !uuid.Valid(req.SessionID) {
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, "session_id must be a UUID v4")
		return
	}
	extendWrite(w, s.verbTimeout+writeSlack)
	res, err := s.RunRequest(r.Context(), req.SessionID, verb, Actor{Kind: Operator, Name: p.Name}, Request{Args: req.Args, Presence: req.Presence})
	if err != nil {
		wire.WriteError(w, runError(err))
		return
	}
	wire.WriteJSON(w, http.StatusOK, res)
}

// serveApproval answers POST /api/sessions/{id}/approvals/{aid} with body
// {"approve":true|false}: 200 resolved, 404 no such approval in that
// session, 409 already resolved.
func (s *Service) serveApproval(w http.ResponseWriter, r *http.Request, p wire.Principal) {
	sid, aid := mux.Vars(r)["id"], mux.Vars(r)["aid"]
	if !uuid.Valid(sid) || !uuid.Valid(aid) {
		fail(w, http.StatusNotFound, wire.CodeNotFound, ErrNotFound.Error())
		return
	}
	var req ApprovalRequest
	if err := wire.ReadJSON(w, r, maxBody, &req, false); err != nil {
		wire.WriteError(w, err)
		return
	}
	if req.Approve == nil {
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, `body must say {"approve":true} or {"approve":false}`)
		return
	}
	var err error
	if *req.Approve && req.Presence == nil {
		// An approval with nothing to sign is refused here, before it
		// is used up, when the keyholder would refuse the verb anyway.
		if _, _, err = s.pendingVerb(sid, aid); err == nil && s.PresenceRequired(r.Context()) {
			s.log.Warn("approval refused: no operator presence", "approval_id", aid, "session_id", sid, "remote", r.RemoteAddr)
			fail(w, http.StatusForbidden, wire.CodePresenceRequired, "operator presence: approving needs your passkey (ask for the approval's challenge first)")
			return
		}
	}
	if err == nil {
		err = s.Answer(sid, aid, *req.Approve, req.Presence, p.Name)
	}
	switch {
	case errors.Is(err, ErrNotFound):
		fail(w, http.StatusNotFound, wire.CodeNotFound, err.Error())
		return
	case errors.Is(err, ErrResolved):
		fail(w, http.StatusConflict, wire.CodeResolved, err.Error())
		return
	case err != nil:
		fail(w, http.StatusInternalServerError, wire.CodeError, "resolve approval")
		return
	}
	s.log.Info("approval answered", "approval_id", aid, "session_id", sid, "approve", *req.Approve, "operator", p.Name)
	wire.WriteJSON(w, http.StatusOK, map[string]any{"approval_id": aid, "approve": *req.Approve})
}

// serveAgentVerb answers POST /api/agent/verbs/{verb} for the `pve` command.
// The turn token in wire.TokenHeader is the only credential: no token, a revoked
// one, or a session id that is not the token's → 401, before anything else
// is looked at. The verb then runs as the agent in the token's session,
// under the policy, and stops (an approval expires) when the token is
// revoked.
func (s *Service) serveAgentVerb(w http.ResponseWriter, r *http.Request) {
	vals := r.Header.Values(wire.TokenHeader)
	if len(vals) != 1 {
		s.rejectToken(w, r, "no live token")
		return
	}
	t, ok := s.tokens.Lookup(vals[0])
	if !ok {
		s.rejectToken(w, r, "no live token")
		return
	}
	verb := mux.Vars(r)["verb"]
	v, err := verbs.Parse(verb)
	if err != nil {
		s.metrics.observe("", Agent, outcomeInvalid)
		fail(w, http.StatusBadRequest, wire.CodeInvalidVerb, err.Error())
		return
	}
	var req RunRequest
	if err := wire.ReadJSON(w, r, v.MaxBody, &req, true); err != nil {
		wire.WriteError(w, err)
		return
	}
	if req.SessionID != "" && req.SessionID != t.SessionID {
		s.rejectToken(w, r, "token of another session")
		return
	}
	// The request ends when its client goes or its turn ends.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(t.Ctx, cancel)
	defer stop()
	if t.Ctx.Err() != nil {
		s.rejectToken(w, r, "token revoked")
		return
	}
	extendWrite(w, s.MaxWait()+writeSlack)
	res, err := s.RunArgs(ctx, t.SessionID, verb, req.Args, Actor{Kind: Agent})
	if err != nil {
		wire.WriteError(w, runError(err))
		return
	}
	wire.WriteJSON(w, http.StatusOK, res)
}

// rejectToken answers 401 on the agent's endpoint. The token itself is
// never logged.
func (s *Service) rejectToken(w http.ResponseWriter, r *http.Request, why string) {
	s.log.Warn("agent token rejected", "why", why, "remote", r.RemoteAddr, "path", r.URL.Path)
	fail(w, http.StatusUnauthorized, wire.CodeToken, "turn token rejected: pve works only during the turn that started it")
}

// runError is the answer to an error of Run or of the verb list.
func runError(err error) *wire.Error {
	var kerr *ipc.StatusError
	e := func(status int, code wire.Code, msg string) *wire.Error {
		return &wire.Error{Status: status, Code: code, Message: msg}
	}
	switch {
	case errors.Is(err, verbs.ErrUnknown):
		return e(http.StatusBadRequest, wire.CodeInvalidVerb, err.Error())
	case errors.Is(err, verbs.ErrArgs):
		return e(http.StatusBadRequest, wire.CodeBadArgs, err.Error())
	case errors.Is(err, ErrBadSession), errors.Is(err, ErrBadActor):
		return e(http.StatusBadRequest, wire.CodeBadRequest, err.Error())
	case errors.Is(err, ErrRefused):
		return e(http.StatusForbidden, wire.CodeRefused, err.Error())
	case errors.Is(err, ErrDenied):
		return e(http.StatusForbidden, wire.CodeDenied, err.Error())
	case errors.Is(err, ErrExpired):
		return e(http.StatusForbidden, wire.CodeExpired, err.Error())
	case errors.Is(err, ErrTooManyPending):
		return e(http.StatusTooManyRequests, wire.CodeTooManyPending, err.Error())
	case errors.Is(err, ErrUnreachable):
		return e(http.StatusServiceUnavailable, wire.CodeKeyholderDown, "keyholder unreachable: the verb did not run; is the keyholder container up?")
	case errors.As(err, &kerr) && kerr.Status >= 400 && kerr.Status <= 599:
		return &wire.Error{Status: kerr.Status, Code: keyholderCode(kerr.Status), Message: kerr.Message, Reason: kerr.Reason}
	case errors.Is(err, context.DeadlineExceeded):
		return e(http.StatusGatewayTimeout, wire.CodeTimeout, "the keyholder did not answer in time")
	}
	return e(http.StatusBadGateway, wire.CodeError, "keyholder call failed")
}

// extendWrite lifts the server's write timeout for a request that may wait
// up to d (an approval, a slow verb). Servers without one are left alone.
func extendWrite(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

// fail answers with status, code and msg (package wire writes it).
func fail(w http.ResponseWriter, status int, code wire.Code, msg string) {
	wire.WriteError(w, &wire.Error{Status: status, Code: code, Message: msg})
}
