// Package session owns the web's sessions (docs/sessions.md): each session's
// append-only event log with ids 1, 2, 3…, its persistence in
// <dir>/<id>/events.jsonl with a summary in session.json, the start-up that
// reads summaries only, its attached subscribers (replayed from the file),
// its at most one running turn, which runs detached from every client,
// rename, archive, search, retention and export, and the operator in the
// loop (docs/operator-loop.md): each session's agent mode, the permission
// questions asked of the operator and their bounded wait, and steering
// messages into a running turn.
//
// It must never build a path from a session id that is not a canonical UUID
// v4, never let a slow subscriber block a turn (a full subscriber is
// dropped and resumes by id), never end a turn without exactly one `done`
// event, never run more turns at once than its configured cap, never hold a
// session's events in memory (except those a full disk could not save),
// and never delete a session.
package session
