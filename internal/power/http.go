package power

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/gorilla/mux"

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

// Identity returns the authenticated operator's name for r, or "" when r is
// not authenticated. The api layer provides it (the x-authentik-username of
// a trusted proxy, or the bearer token's fixed identity).
type Identity func(r *http.Request) string

// RegisterOperator adds the operator's routes to r, which must sit behind
// the api layer's authentication and same-origin check:
//
//	GET  /api/vm
//	GET  /api/vm/health
//	POST /api/vm/{verb}
//	GET  /api/sessions/{id}/images/{name}
//	POST /api/sessions/{id}/approvals/{aid}
func (s *Service) RegisterOperator(r *mux.Router, identity Identity) {
	r.Handle("/api/vm", s.ListHandler(identity)).Methods(http.MethodGet)
	r.Handle("/api/vm/health", s.HealthHandler(identity)).Methods(http.MethodGet)
	r.Handle("/api/vm/{verb}", s.OperatorHandler(identity)).Methods(http.MethodPost)
	r.Handle("/api/sessions/{id}/images/{name}", s.ImageHandler(identity)).Methods(http.MethodGet, http.MethodHead)
	r.Handle("/api/vm/{verb}/challenge", s.ChallengeHandler(identity)).Methods(http.MethodPost)
	r.Handle("/api/sessions/{id}/approvals/{aid}", s.ApprovalHandler(identity)).Methods(http.MethodPost)
	r.Handle("/api/sessions/{id}/approvals/{aid}/challenge", s.ApprovalChallengeHandler(identity)).Methods(http.MethodPost)
}

// RegisterAgent adds the agent's route, POST /api/agent/verbs/{verb}, to r,
// which must NOT sit behind the operator's authentication: the turn token is
// its only credential, and an operator identity on it counts for nothing.
func (s *Service) RegisterAgent(r *mux.Router) {
	r.Handle(AgentVerbPrefix+"{verb}", s.AgentHandler()).Methods(http.MethodPost)
}

// operator returns the operator's name for a request on the operator's
// routes, or answers it and reports false. A turn token on these routes is
// refused outright: the agent has its own endpoint, so a token here is a
// request dressed up as the operator's (to run a verb, or to approve its
// own).
func operator(w http.ResponseWriter, r *http.Request, identity Identity) (string, bool) {
	if len(r.Header.Values(TokenHeader)) > 0 {
		writeError(w, http.StatusForbidden, CodeForbidden, "a turn token is not accepted on the operator's routes")
		return "", false
	}
	name := identity(r)
	if name == "" {
		writeError(w, http.StatusUnauthorized, CodeUnauthorized, "not authenticated")
		return "", false
	}
	return name, true
}

// ListHandler answers GET /api/vm with the keyholder's verb list.
func (s *Service) ListHandler(identity Identity) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := operator(w, r, identity); !ok {
			return
		}
		list, err := s.verbList(r.Context())
		if err != nil {
			s.log.Warn("list verbs", "error", err)
			writeRunError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, list)
	})
}

// OperatorHandler answers POST /api/vm/{verb} (body optional
// {"session_id":…}): the operator runs a verb, and the keyholder's answer is
// relayed.
func (s *Service) OperatorHandler(identity Identity) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := operator(w, r, identity)
		if !ok {
			return
		}
		verb := mux.Vars(r)["verb"]
		v, err := verbs.Parse(verb)
		if err != nil {
			s.metrics.observe("", Operator, outcomeInvalid)
			writeError(w, http.StatusBadRequest, CodeInvalidVerb, err.Error())
			return
		}
		var req RunRequest
		if err := decodeBodyMax(w, r, &req, true, v.MaxBody); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
			return
		}
		if req.SessionID != "" && !uuid.Valid(req.SessionID) {
			writeError(w, http.StatusBadRequest, CodeBadRequest, "session_id must be a UUID v4")
			return
		}
		extendWrite(w, s.verbTimeout+writeSlack)
		res, err := s.RunRequest(r.Context(), req.SessionID, verb, Actor{Kind: Operator, Name: name}, Request{Args: req.Args, Presence: req.Presence})
		if err != nil {
			writeRunError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// ApprovalHandler answers POST /api/sessions/{id}/approvals/{aid} with body
// {"approve":true|false}: 200 resolved, 404 no such approval in that
// session, 409 already resolved.
func (s *Service) ApprovalHandler(identity Identity) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := operator(w, r, identity)
		if !ok {
			return
		}
		sid, aid := mux.Vars(r)["id"], mux.Vars(r)["aid"]
		if !uuid.Valid(sid) || !uuid.Valid(aid) {
			writeError(w, http.StatusNotFound, CodeNotFound, ErrNotFound.Error())
			return
		}
		var req ApprovalRequest
		if err := decodeBody(w, r, &req, false); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
			return
		}
		if req.Approve == nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, `body must say {"approve":true} or {"approve":false}`)
			return
		}
		var err error
		if *req.Approve && req.Presence == nil {
			// An approval with nothing to sign is refused here, before it
			// is used up, when the keyholder would refuse the verb anyway.
			if _, _, err = s.pendingVerb(sid, aid); err == nil && s.PresenceRequired(r.Context()) {
				writeError(w, http.StatusForbidden, CodePresenceRequired, "operator presence: approving needs your passkey (ask for the approval's challenge first)")
				return
			}
		}
		if err == nil {
			err = s.Answer(sid, aid, *req.Approve, req.Presence)
		}
		switch {
		case errors.Is(err, ErrNotFound):
			writeError(w, http.StatusNotFound, CodeNotFound, err.Error())
			return
		case errors.Is(err, ErrResolved):
			writeError(w, http.StatusConflict, CodeResolved, err.Error())
			return
		case err != nil:
			writeError(w, http.StatusInternalServerError, CodeError, "resolve approval")
			return
		}
		s.log.Info("approval answered", "approval_id", aid, "session_id", sid, "approve", *req.Approve, "operator", name)
		writeJSON(w, http.StatusOK, map[string]any{"approval_id": aid, "approve": *req.Approve})
	})
}

// AgentHandler answers POST /api/agent/verbs/{verb} for the `pve` command.
// The turn token in TokenHeader is the only credential: no token, a revoked
// one, or a session id that is not the token's → 401, before anything else
// is looked at. The verb then runs as the agent in the token's session,
// under the policy, and stops (an approval expires) when the token is
// revoked.
func (s *Service) AgentHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		vals := r.Header.Values(TokenHeader)
		var t *turnToken
		if len(vals) == 1 {
			t = s.lookup(vals[0])
		}
		if t == nil {
			s.rejectToken(w, r, "no live token")
			return
		}
		verb := mux.Vars(r)["verb"]
		v, err := verbs.Parse(verb)
		if err != nil {
			s.metrics.observe("", Agent, outcomeInvalid)
			writeError(w, http.StatusBadRequest, CodeInvalidVerb, err.Error())
			return
		}
		var req RunRequest
		if err := decodeBodyMax(w, r, &req, true, v.MaxBody); err != nil {
			writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
			return
		}
		if req.SessionID != "" && req.SessionID != t.sessionID {
			s.rejectToken(w, r, "token of another session")
			return
		}
		// The request ends when its client goes or its turn ends.
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		stop := context.AfterFunc(t.ctx, cancel)
		defer stop()
		if t.ctx.Err() != nil {
			s.rejectToken(w, r, "token revoked")
			return
		}
		extendWrite(w, s.MaxWait()+writeSlack)
		res, err := s.RunArgs(ctx, t.sessionID, verb, req.Args, Actor{Kind: Agent})
		if err != nil {
			writeRunError(w, err)
			return
		}
		writeJSON(w, http.StatusOK, res)
	})
}

// rejectToken answers 401 on the agent's endpoint. The token itself is
// never logged.
func (s *Service) rejectToken(w http.ResponseWriter, r *http.Request, why string) {
	s.log.Warn("agent token rejected", "why", why, "remote", r.RemoteAddr, "path", r.URL.Path)
	writeError(w, http.StatusUnauthorized, CodeToken, "turn token rejected: pve works only during the turn that started it")
}

// writeRunError answers for an error of Run or of the verb list.
func writeRunError(w http.ResponseWriter, err error) {
	var kerr *ipc.StatusError
	switch {
	case errors.Is(err, verbs.ErrUnknown):
		writeError(w, http.StatusBadRequest, CodeInvalidVerb, err.Error())
	case errors.Is(err, verbs.ErrArgs):
		writeError(w, http.StatusBadRequest, CodeBadArgs, err.Error())
	case errors.Is(err, ErrBadSession), errors.Is(err, ErrBadActor):
		writeError(w, http.StatusBadRequest, CodeBadRequest, err.Error())
	case errors.Is(err, ErrRefused):
		writeError(w, http.StatusForbidden, CodeRefused, err.Error())
	case errors.Is(err, ErrDenied):
		writeError(w, http.StatusForbidden, CodeDenied, err.Error())
	case errors.Is(err, ErrExpired):
		writeError(w, http.StatusForbidden, CodeExpired, err.Error())
	case errors.Is(err, ErrTooManyPending):
		writeError(w, http.StatusTooManyRequests, CodeTooManyPending, err.Error())
	case errors.Is(err, ErrUnreachable):
		writeError(w, http.StatusServiceUnavailable, CodeKeyholderDown, "keyholder unreachable: the verb did not run; is the keyholder container up?")
	case errors.As(err, &kerr) && kerr.Status >= 400 && kerr.Status <= 599:
		writeJSON(w, kerr.Status, ErrorBody{Error: kerr.Message, Code: keyholderCode(kerr.Status), Reason: kerr.Reason})
	case errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusGatewayTimeout, CodeTimeout, "the keyholder did not answer in time")
	default:
		writeError(w, http.StatusBadGateway, CodeError, "keyholder call failed")
	}
}

// decodeBody reads r's JSON body into v, at most maxBody bytes, with no
// unknown fields and nothing after the value. An empty body is accepted when
// optional.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, optional bool) error {
	return decodeBodyMax(w, r, v, optional, maxBody)
}

// decodeBodyMax is decodeBody with its own cap.
func decodeBodyMax(w http.ResponseWriter, r *http.Request, v any, optional bool, limit int64) error {
	var body []byte
	var err error
	if r.Body != nil {
		body, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return fmt.Errorf("body larger than %d bytes", limit)
		}
		return errors.New("body unreadable")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if optional {
			return nil
		}
		return errors.New("body required")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("malformed JSON: %v", err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return errors.New("malformed JSON: data after the object")
	}
	return nil
}

// extendWrite lifts the server's write timeout for a request that may wait
// up to d (an approval, a slow verb). Servers without one are left alone.
func extendWrite(w http.ResponseWriter, d time.Duration) {
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(d))
}

func writeError(w http.ResponseWriter, status int, code Code, msg string) {
	writeJSON(w, status, ErrorBody{Error: msg, Code: code})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
