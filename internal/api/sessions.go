package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"syscall"

	"github.com/gorilla/mux"

	"breakglass/internal/session"
)

// Body limits.
const (
	maxSmallBody = 4 << 10
	// maxPromptBody leaves room for JSON escaping of a prompt at the
	// 64 KiB limit; the text itself is checked after decoding.
	maxPromptBody = 8 * session.MaxPromptBytes
)

// errBodyTooLarge is a body over its limit (413).
var errBodyTooLarge = errors.New("request body too large")

// decodeBody reads r's JSON body into v. An empty body is allowed when
// optional. Errors carry a reason fit for the client.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, optional bool) error {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return errBodyTooLarge
		}
		return errors.New("unreadable body")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return errors.New("empty body: JSON expected")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errors.New("malformed JSON: " + err.Error())
	}
	if dec.More() {
		return errors.New("malformed JSON: trailing data after the object")
	}
	return nil
}

// writeBodyError answers a decodeBody error.
func writeBodyError(w http.ResponseWriter, err error) {
	if errors.Is(err, errBodyTooLarge) {
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
		return
	}
	writeError(w, http.StatusBadRequest, err.Error())
}

// writeSessionError answers an error of the session manager.
func writeSessionError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, session.ErrNotFound):
		writeError(w, http.StatusNotFound, "session not found")
	case errors.Is(err, session.ErrBusy):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, session.ErrArchived):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, session.ErrNotRunning):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, session.ErrTooManyTurns):
		writeError(w, http.StatusTooManyRequests, "too many turns running: wait for one to finish")
	case errors.Is(err, session.ErrEmptyPrompt):
		writeError(w, http.StatusBadRequest, "empty prompt")
	case errors.Is(err, session.ErrPromptTooLarge):
		writeError(w, http.StatusRequestEntityTooLarge, err.Error())
	case errors.Is(err, session.ErrBadCursor):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, session.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, "shutting down")
	case storageFull(err):
		writeError(w, http.StatusInsufficientStorage, "the sessions folder cannot be written (full or read-only); the VM controls still work")
	default:
		writeError(w, http.StatusInternalServerError, "internal error")
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
	if err := decodeBody(w, r, maxSmallBody, &body, true); err != nil {
		writeBodyError(w, err)
		return
	}
	info, err := s.sessions.Create()
	if err != nil {
		s.log.Error("create session", "error", err)
		writeSessionError(w, err)
		return
	}
	s.log.Info("session created", "session", info.ID, "actor", Identity(r))
	writeJSON(w, http.StatusCreated, info)
}

// getSession answers GET /api/sessions/{id}.
func (s *Server) getSession(w http.ResponseWriter, r *http.Request) {
	info, err := s.sessions.Get(mux.Vars(r)["id"])
	if err != nil {
		writeSessionError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

// promptBody is POST /api/sessions/{id}/prompt's body.
type promptBody struct {
	Text string `json:"text"`
}

// prompt answers POST /api/sessions/{id}/prompt: 202 once the turn started.
func (s *Server) prompt(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if _, err := s.sessions.Get(id); err != nil {
		writeSessionError(w, err)
		return
	}
	var body promptBody
	if err := decodeBody(w, r, maxPromptBody, &body, false); err != nil {
		writeBodyError(w, err)
		return
	}
	if err := s.sessions.Prompt(id, body.Text, Identity(r)); err != nil {
		writeSessionError(w, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "started"})
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
	writeJSON(w, http.StatusAccepted, map[string]string{"status": "cancelling"})
}
