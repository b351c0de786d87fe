// Package session owns the web's sessions (DESIGN §6.3): each session's
// append-only event log with ids 1, 2, 3…, its persistence in
// <dir>/<id>/events.jsonl and the reload at start, its attached subscribers,
// and its at most one running turn, which runs detached from every client.
//
// It must never build a path from a session id that is not a canonical UUID
// v4, never let a slow subscriber block a turn (a full subscriber is
// dropped and resumes by id), never end a turn without exactly one `done`
// event, and never run more turns at once than its configured cap.
package session
