package keyholder

import (
	"errors"
	"net/http"

	"breakglass/internal/verbs"
)

// Reason is the machine-readable code every refusal on keyholder.sock
// carries in its `reason` field, beside the plain `error` message. The set
// is fixed: callers may switch on it.
type Reason string

// The reasons. Presence refusals add their own (internal/presence).
const (
	ReasonNoPeerCred     Reason = "no_peer_credentials"
	ReasonQuery          Reason = "query_string"
	ReasonMalformedPath  Reason = "malformed_path"
	ReasonNotFound       Reason = "not_found"
	ReasonMethod         Reason = "method_not_allowed"
	ReasonPercent        Reason = "percent_encoded"
	ReasonUnknownVerb    Reason = "unknown_verb"
	ReasonBodyTooLarge   Reason = "body_too_large"
	ReasonMalformedJSON  Reason = "malformed_json"
	ReasonUnknownField   Reason = "unknown_field"
	ReasonDuplicateKey   Reason = "duplicate_key"
	ReasonWrongCaseKey   Reason = "wrong_case_key"
	ReasonTrailingData   Reason = "trailing_data"
	ReasonBadActor       Reason = "bad_actor"
	ReasonBadArgs        Reason = "bad_args"
	ReasonOutputTooLarge Reason = "output_too_large"
	ReasonBadOutput      Reason = "bad_output"
	ReasonBadRequest     Reason = "bad_request"
	ReasonBusy           Reason = "busy"
	ReasonTooMany        Reason = "too_many_verbs"
	ReasonHostKey        Reason = "host_key_mismatch"
	ReasonSSH            Reason = "ssh_failed"
	ReasonUnreachable    Reason = "unreachable"
	ReasonTimeout        Reason = "timeout"
	ReasonShuttingDown   Reason = "shutting_down"
	ReasonForbidden      Reason = "forbidden"
	ReasonRefused        Reason = "refused"
)

// Errors of request bodies, mapped to their reasons.
var (
	errBodyTooLarge = errors.New("body too large")
	errBadActor     = errors.New("bad actor")
)

// reasonOf names the reason of a refusal with status, from err when it says
// more, else from the status alone.
func reasonOf(status int, err error) Reason {
	for _, m := range []struct {
		err    error
		reason Reason
	}{
		{verbs.ErrUnknown, ReasonUnknownVerb},
		{verbs.ErrArgs, ReasonBadArgs},
		{errBodyTooLarge, ReasonBodyTooLarge},
		{errBadActor, ReasonBadActor},
		{ErrUnknownField, ReasonUnknownField},
		{ErrDuplicateKey, ReasonDuplicateKey},
		{ErrWrongCaseKey, ReasonWrongCaseKey},
		{ErrTrailingData, ReasonTrailingData},
		{ErrMalformedJSON, ReasonMalformedJSON},
		{ErrBusy, ReasonBusy},
		{ErrTooMany, ReasonTooMany},
		{ErrHostKeyMismatch, ReasonHostKey},
		{ErrClosed, ReasonShuttingDown},
		{ErrTimeout, ReasonTimeout},
		{ErrUnreachable, ReasonUnreachable},
		{ErrSSH, ReasonSSH},
		{ErrOutputTooLarge, ReasonOutputTooLarge},
		{ErrBadOutput, ReasonBadOutput},
	} {
		if err != nil && errors.Is(err, m.err) {
			return m.reason
		}
	}
	switch status {
	case http.StatusForbidden:
		return ReasonForbidden
	case http.StatusNotFound:
		return ReasonNotFound
	case http.StatusMethodNotAllowed:
		return ReasonMethod
	case http.StatusConflict:
		return ReasonBusy
	case http.StatusRequestEntityTooLarge:
		return ReasonBodyTooLarge
	case http.StatusTooManyRequests:
		return ReasonTooMany
	case http.StatusBadGateway:
		return ReasonSSH
	case http.StatusServiceUnavailable:
		return ReasonShuttingDown
	case http.StatusGatewayTimeout:
		return ReasonTimeout
	case http.StatusBadRequest:
		return ReasonBadRequest
	}
	return ReasonRefused
}
