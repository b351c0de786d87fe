package api

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"breakglass/internal/api/wire"
	"breakglass/internal/claude"
	"breakglass/internal/session"
)

// patchBody is PATCH /api/sessions/{id}'s body: the fields to change.
type patchBody struct {
	Title *string `json:"title"`
	// Mode is the agent's mode (docs/operator-loop.md): autopilot,
	// careful or read-only.
	Mode *string `json:"mode"`
}

// writeManageError answers an error of rename, archive, search or export.
func writeManageError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, session.ErrEmptyTitle), errors.Is(err, session.ErrTitleTooLong),
		errors.Is(err, session.ErrBadTitle):
		fail(w, http.StatusBadRequest, wire.CodeBadTitle, err.Error())
	case errors.Is(err, session.ErrBadQuery):
		fail(w, http.StatusBadRequest, wire.CodeBadQuery, err.Error())
	case errors.Is(err, session.ErrBadMode):
		fail(w, http.StatusBadRequest, wire.CodeBadMode, err.Error())
	case errors.Is(err, session.ErrBusy):
		fail(w, http.StatusConflict, wire.CodeTurnRunning, "a turn is running in this session: stop it first")
	default:
		writeSessionError(w, err)
	}
}

// patchSession answers PATCH /api/sessions/{id} {"title"} or {"mode"}: 200
// with the session renamed or its agent mode changed (effective at the
// next tool request).
func (s *Server) patchSession(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if _, err := s.sessions.Get(id); err != nil {
		writeSessionError(w, err)
		return
	}
	var body patchBody
	if err := wire.ReadJSON(w, r, maxSmallBody*4, &body, false); err != nil {
		wire.WriteError(w, err)
		return
	}
	switch {
	case body.Mode != nil && body.Title != nil:
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, `one change at a time: {"title"} or {"mode"}`)
		return
	case body.Mode != nil:
		info, err := s.sessions.SetMode(id, claude.Mode(*body.Mode))
		if err != nil {
			writeManageError(w, err)
			return
		}
		s.log.Info("agent mode changed", "session", id, "mode", info.Mode, "actor", Identity(r))
		wire.WriteJSON(w, http.StatusOK, info)
		return
	case body.Title == nil:
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, `nothing to change: {"title"} or {"mode"} expected`)
		return
	}
	info, err := s.sessions.Rename(id, *body.Title)
	if err != nil {
		writeManageError(w, err)
		return
	}
	s.log.Info("session renamed", "session", id, "actor", Identity(r))
	wire.WriteJSON(w, http.StatusOK, info)
}

// archiveSession answers DELETE /api/sessions/{id}: the session is hidden
// from the list, its files kept; 409 while a turn runs.
func (s *Server) archiveSession(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	info, err := s.sessions.Archive(id)
	if err != nil {
		writeManageError(w, err)
		return
	}
	s.log.Info("session archived", "session", id, "actor", Identity(r))
	wire.WriteJSON(w, http.StatusOK, info)
}

// restoreSession answers POST /api/sessions/{id}/restore.
func (s *Server) restoreSession(w http.ResponseWriter, r *http.Request) {
	id := mux.Vars(r)["id"]
	if _, err := s.sessions.Get(id); err != nil {
		writeSessionError(w, err)
		return
	}
	var body struct{}
	if err := wire.ReadJSON(w, r, maxSmallBody, &body, true); err != nil {
		wire.WriteError(w, err)
		return
	}
	info, err := s.sessions.Restore(id)
	if err != nil {
		writeManageError(w, err)
		return
	}
	s.log.Info("session restored", "session", id, "actor", Identity(r))
	wire.WriteJSON(w, http.StatusOK, info)
}

// listSessions answers GET /api/sessions[?q=…][&archived=1], newest first,
// from the summaries.
func (s *Server) listSessions(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var query session.Query
	switch q.Get("archived") {
	case "", "0":
	case "1":
		query.Archived = true
	default:
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, "archived must be 0 or 1")
		return
	}
	if len(q["q"]) > 1 {
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, "one q at most")
		return
	}
	query.Text = q.Get("q")
	infos, err := s.sessions.Search(query)
	if err != nil {
		writeManageError(w, err)
		return
	}
	wire.WriteJSON(w, http.StatusOK, infos)
}

// exportSession answers GET /api/sessions/{id}/export?format=md|json
// (md when absent): the whole session as a file to keep. A log that cannot
// be read to its end aborts the response, so a client never keeps a cut
// record for a whole one.
func (s *Server) exportSession(w http.ResponseWriter, r *http.Request) {
	format := r.URL.Query().Get("format")
	if format == "" {
		format = "md"
	}
	if format != "md" && format != "json" {
		fail(w, http.StatusBadRequest, wire.CodeBadRequest, "format must be md or json")
		return
	}
	snap, err := s.sessions.Snapshot(mux.Vars(r)["id"])
	if err != nil {
		writeSessionError(w, err)
		return
	}
	now := time.Now().UTC()
	name := fmt.Sprintf("breakglass-%s-%s.%s", now.Format("20060102"), snap.Info.ID[:8], format)
	h := w.Header()
	h.Set("Content-Disposition", `attachment; filename="`+name+`"`)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	if format == "json" {
		h.Set("Content-Type", "application/json")
	} else {
		h.Set("Content-Type", "text/markdown; charset=utf-8")
	}
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(s.writeTimeout + time.Duration(snap.Len())*time.Millisecond))
	if format == "json" {
		err = session.WriteJSON(w, snap)
	} else {
		err = session.WriteMarkdown(w, snap, now)
	}
	if err != nil {
		s.log.Error("export a session", "session", snap.Info.ID, "error", err)
		panic(http.ErrAbortHandler)
	}
	s.log.Info("session exported", "session", snap.Info.ID, "format", format, "actor", Identity(r))
}
