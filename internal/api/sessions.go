package api

import (
	"errors"
	"io"
	"net/http"
	"syscall"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/session"
)

// Body limits.
const (
	maxSmallBody = 4 << 10
	// maxPromptBody leaves room for JSON escaping of a prompt at the
	// 64 KiB limit; the text itself is checked after decoding.
	maxPromptBody = 8 * session.MaxPromptBytes
)

// writeSessionError answers an error of the session manager.
func writeSessionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, session.ErrNotFound):
		fail(w, http.StatusNotFound, wire.CodeSessionNotFound, "session not found")
	case errors.Is(err, session.ErrBusy):
		fail(w, http.StatusConflict, wire.CodeTurnRunning, err.Error())
	case errors.Is(err, session.ErrArchived):
		fail(w, http.StatusConflict, wire.CodeArchived, err.Error())
	case errors.Is(err, session.ErrNotRunning):
		fail(w, http.StatusConflict, wire.CodeNotRunning, err.Error())
	case errors.Is(err, session.ErrTurnEnding):
		fail(w, http.StatusConflict, wire.CodeTurnEnding, err.Error())
	case errors.Is(err, session.ErrPermissionNotFound):
		fail(w, http.StatusNotFound, wire.CodePermissionNotFound, err.Error())
	case errors.Is(err, session.ErrPermissionAnswered):
		fail(w, http.StatusConflict, wire.CodeAnswered, err.Error())
	case errors.Is(err, session.ErrMessageTooLarge):
		fail(w, http.StatusRequestEntityTooLarge, wire.CodeNoteTooLarge, err.Error())
	case errors.Is(err, session.ErrTooManyTurns):
		fail(w, http.StatusTooManyRequests, wire.CodeTooManyTurns, "too many turns running: wait for one to finish")
	case errors.Is(err, session.ErrEmptyPrompt):
		fail(w, http.StatusBadRequest, wire.CodeEmptyPrompt, "empty prompt")
	case errors.Is(err, session.ErrPromptTooLarge):
		fail(w, http.StatusRequestEntityTooLarge, wire.CodePromptTooLarge, err.Error())
	case errors.Is(err, session.ErrBadCursor):
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, err.Error())
	case errors.Is(err, session.ErrClosed):
		fail(w, http.StatusServiceUnavailable, wire.CodeShuttingDown, "shutting down")
	case storageFull(err):
		fail(w, http.StatusInsufficientStorage, wire.CodeStorageFull, "the sessions folder cannot be written (full or read-only); the VM controls still work")
	default:
		fail(w, http.StatusInternalServerError, wire.CodeError, "internal error")
	}
}

// storageFull reports a write the sessions folder refused for lack of room
// or of write access: the operator can do nothing about it from the page,
// but should know why, and that the power controls do not depend on it.
func storageFull(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) ||
		errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EROFS)
}

// createSession answers POST /api/sessions. The body is optional; when
// present it must be a JSON object (no fields are defined yet).
func (s *Server) createSession(w http.ResponseWriter, r *http.Request) {
	var body struct{}
	if err := wire.ReadJSON(w, r, maxSmallBody, &body, true); err != nil {
		wire.WriteError(w, err)
		return
	}
	info, err := s.sessions.Create()
	if err != nil {
		s.log.Error("create session", "error", err)
		writeSessionError(w, err)
		return
	}
	s.log.Info("session created", "session", info.ID, "actor", Identity(r))
	wire.WriteJSON(w, http.StatusCreated, info)
}

// getSession answers GET /api/sessions/{id}.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	info, err := s.sessions.Get(mux.Vars(r)["id"])
	if err != nil {
		writeSessionError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, info)
}

// promptBody is POST /api/sessions/{id}/prompt's body.
type promptBody struct {
	Text string `json:"text"`
}

// prompt answers POST /api/sessions/{id}/prompt: 202 once the turn started,
// or, while a turn runs, once the text went into it (steered).
func (s *Server) prompt(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if _, err := s.sessions.Get(id); err != nil {
		writeSessionError(w, err)
		return
	}
	var body promptBody
	if err := wire.ReadJSON(w, r, maxPromptBody, &body, false); err != nil {
		wire.WriteError(w, err)
		return
	}
	steered, err := s.sessions.PromptOrSteer(id, body.Text, Identity(r))
	if err != nil {
		writeSessionError(w, err)
		return
	}
	status := "started"
	if steered {
		status = "steered"
	}
	wire.WriteJSON(w, http.StatusAccepted, map[string]string{"status": status})
}

// permissionBody is POST /api/sessions/{id}/permissions/{request_id}'s body.
type permissionBody struct {
	Allow   *bool  `json:"allow"`
	Message string `json:"message"`
}

// maxPermissionBody leaves room for JSON escaping of the largest note.
const maxPermissionBody = 8 * session.MaxPermissionMessage

// answerPermission answers POST /api/sessions/{id}/permissions/{request_id}
// {"allow":bool,"message"?}: 200 answered; 404 unknown (another session's,
// not a UUID); 409 already answered.
func (s *Server) answerPermission(w http.ResponseWriter, r *http.Request) {
	id, reqID := mux.Vars(r)["id"], mux.Vars(r)["request_id"]
	if _, err := s.sessions.Get(id); err != nil {
		writeSessionError(w, err)
		return
	}
	var body permissionBody
	if err := wire.ReadJSON(w, r, maxPermissionBody, &body, false); err != nil {
		wire.WriteError(w, err)
		return
	}
	if body.Allow == nil {
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, `{"allow":true} or {"allow":false} expected`)
		return
	}
	if err := s.sessions.AnswerPermission(id, reqID, *body.Allow, body.Message, Identity(r)); err != nil {
		writeSessionError(w, err)
		return
	}
	state := "denied"
	if *body.Allow {
		state = "allowed"
	}
	wire.WriteJSON(w, http.StatusOK, map[string]string{"request_id": reqID, "state": state})
}

// cancel answers POST /api/sessions/{id}/cancel: 202 cancelling, 409
// nothing running. A body, if any, is ignored up to a small limit.
func (s *Server) cancel(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxSmallBody))
	if err := s.sessions.Cancel(mux.Vars(r)["id"]); err != nil {
		writeSessionError(w, err)
		return
	}
	s.log.Info("turn cancel", "session", mux.Vars(r)["id"], "actor", Identity(r))
	wire.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "cancelling"})
}
