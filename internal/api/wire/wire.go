package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Code says in one word why a request failed, in every error body, so the
// UI and the `pve` command branch on it, never on a status or on prose.
// A code, once used, keeps its meaning.
type Code string

// The codes. The status each one usually goes with is in its comment.
const (
	// Authentication and routing.
	CodeUnauthorized     Code = "unauthorized"       // 401: no operator identity
	CodeForbidden        Code = "forbidden"          // 403: a turn token on an operator route
	CodeCrossOrigin      Code = "cross_origin"       // 403: a cross-origin state change
	CodeNotFound         Code = "not_found"          // 404: no such route or thing
	CodeMethodNotAllowed Code = "method_not_allowed" // 405
	CodeBadRequest       Code = "bad_request"        // 400: malformed body or parameter
	CodeBodyTooLarge     Code = "body_too_large"     // 413
	CodeNotImplemented   Code = "not_implemented"    // 501
	CodeError            Code = "error"              // 500 or 502: anything else

	// Sessions.
	CodeSessionNotFound Code = "session_not_found" // 404
	CodeTurnRunning     Code = "turn_running"      // 409: a turn is already running
	CodeArchived        Code = "archived"          // 409: the session is archived
	CodeNotRunning      Code = "not_running"       // 409: no turn to cancel
	CodeTooManyTurns    Code = "too_many_turns"    // 429: the server's turn limit
	CodeEmptyPrompt     Code = "empty_prompt"      // 400
	CodePromptTooLarge  Code = "prompt_too_large"  // 413
	CodeStorageFull     Code = "storage_full"      // 507: the sessions folder cannot be written
	CodeShuttingDown    Code = "shutting_down"     // 503
	CodeBadTitle        Code = "bad_title"         // 400: a title empty, over 200 characters, or with control characters
	CodeBadQuery        Code = "bad_query"         // 400: a search over 256 bytes or not UTF-8
	CodeBadMode         Code = "bad_mode"          // 400: not autopilot, careful or read-only
	CodeTurnEnding      Code = "turn_ending"       // 409: the running turn has its answer and takes no more messages

	// The operator's answers to the agent's permission questions.
	CodePermissionNotFound Code = "permission_not_found" // 404: no such pending question in this session
	CodeAnswered           Code = "already_answered"     // 409: the question was answered or expired
	CodeNoteTooLarge       Code = "note_too_large"       // 413: the note over 4 KiB

	// Power verbs and approvals.
	CodeToken          Code = "token_rejected"   // 401: no turn token, a dead one, or another session's
	CodeInvalidVerb    Code = "invalid_verb"     // 400: not a verb of the table
	CodeBadArgs        Code = "bad_args"         // 400: args on a verb without them, or an argv outside the limits
	CodeRefused        Code = "refused"          // 403: policy deny
	CodeDenied         Code = "denied"           // 403: the operator denied the approval
	CodeExpired        Code = "expired"          // 403: nobody answered the approval in time
	CodeTooManyPending Code = "too_many_pending" // 429: the session has too many approvals waiting
	CodeBusy           Code = "busy"             // 409: a mutating verb is already running
	CodeTimeout        Code = "timeout"          // 504: the verb timed out
	CodeSSH            Code = "ssh_failed"       // 502: the keyholder could not run it over SSH
	CodeKeyholderDown  Code = "keyholder_down"   // 503: the keyholder's socket did not answer
	CodeResolved       Code = "already_resolved" // 409: approval already resolved

	// Operator presence (a passkey over a keyholder challenge).
	CodePresence         Code = "presence_refused"  // 403: the keyholder refused the presence; Reason names the check
	CodePresenceRequired Code = "presence_required" // 403: an approval approved without the passkey's assertion
)

// ErrorBody is the JSON of every error answer.
type ErrorBody struct {
	Error string `json:"error"`
	Code  Code   `json:"code"`
	// Reason refines a code where the client acts on it: the keyholder's
	// presence refusal (e.g. challenge_expired) with CodePresence.
	Reason string `json:"reason,omitempty"`
}

// Error is an answer that failed: its status, code and the message the
// client may read (never an internal detail).
type Error struct {
	Status  int
	Code    Code
	Message string
	// Reason is ErrorBody.Reason.
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// Errorf builds an *Error.
func Errorf(status int, code Code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// WriteJSON writes v with status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only the web's own plain types are written.
		panic("wire: marshal response: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// WriteError writes err's status and ErrorBody. An error that is not an
// *Error is a 500 whose detail stays in the caller's log.
func WriteError(w http.ResponseWriter, err error) {
	var e *Error
	if !errors.As(err, &e) {
		e = &Error{Status: http.StatusInternalServerError, Code: CodeError, Message: "internal error"}
	}
	WriteJSON(w, e.Status, ErrorBody{Error: e.Message, Code: e.Code, Reason: e.Reason})
}

// ReadJSON reads r's JSON body into v: at most limit bytes, no unknown
// fields, nothing after the value. An empty body is accepted when
// optional. Its errors are *Error (400, or 413 over the limit).
func ReadJSON(w http.ResponseWriter, r *http.Request, limit int64, v any, optional bool) error {
	var b []byte
	var err error
	if r.Body != nil {
		b, err = io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return Errorf(http.StatusRequestEntityTooLarge, CodeBodyTooLarge, "request body larger than %d bytes", limit)
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "unreadable body")
	}
	if len(bytes.TrimSpace(b)) == 0 {
		if optional {
			return nil
		}
		return Errorf(http.StatusBadRequest, CodeBadRequest, "empty body: JSON expected")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: %v", err)
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, CodeBadRequest, "malformed JSON: data after the object")
	}
	return nil
}

// Principal is who an operator route's request is from, as package api
// authenticated it.
type Principal struct {
	// Name is the operator's name (the identity header's value, or the
	// bearer token's fixed actor).
	Name string
	// ViaHeader is set when the identity header authenticated the request.
	ViaHeader bool
}

// OperatorFunc serves an operator route: api calls it only for an
// authenticated operator, after the same-origin check.
type OperatorFunc func(w http.ResponseWriter, r *http.Request, p Principal)

// Route is one route a package serves, mounted by api. Exactly one of
// Operator and Open is set: Operator routes sit behind the operator's
// authentication; Open routes authenticate on their own (the agent's
// token-checked endpoint).
type Route struct {
	Method string
	// Path is a gorilla/mux path template, e.g. /api/vm/{verb}.
	Path     string
	Operator OperatorFunc
	Open     http.HandlerFunc
}

// The agent endpoint's wire contract, shared with the `pve` command.
const (
	// TokenHeader carries the per-turn token on the agent's endpoint. It
	// is the only credential that endpoint accepts, and is refused on
	// every operator route.
	TokenHeader = "X-Breakglass-Turn-Token"
	// AgentVerbPrefix is the agent endpoint's path; the verb follows it.
	AgentVerbPrefix = "/api/agent/verbs/"
)
