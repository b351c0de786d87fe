package ipc

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// The verb API's routes on keyholder.sock (HTTP/1.1, JSON).
const (
	PathHealthz = "/v1/healthz"
	PathVerbs   = "/v1/verbs"
	// PathVerbPrefix is followed by exactly one verb name: POST
	// /v1/verbs/{verb}.
	PathVerbPrefix = "/v1/verbs/"
	PathMetrics    = "/metrics"
	// PathChallenges issues a presence challenge (POST).
	PathChallenges = "/v1/challenges"
	// PathLogins verifies a sign-in assertion (POST).
	PathLogins = "/v1/logins"
	// PathEnrollments begins an enrollment (POST); PathEnrollmentPrefix is
	// followed by its id to finish it.
	PathEnrollments      = "/v1/enrollments"
	PathEnrollmentPrefix = "/v1/enrollments/"
)

// SocketName is the verb API's socket file in BREAKGLASS_SOCKET_DIR.
const SocketName = "keyholder.sock"

// AgentSocketName is the restricted ssh-agent's socket file in
// BREAKGLASS_SOCKET_DIR.
const AgentSocketName = "agent.sock"

// MaxRequestBody bounds a POST /v1/verbs/{verb} body of a verb without
// arguments; larger is refused. Each verb's own cap is verbs.Verb.MaxBody
// (guest-exec's, which carries an argv, is larger).
const MaxRequestBody = 4 << 10

// MaxActorLen bounds RunRequest.Actor in bytes.
const MaxActorLen = 256

// Health is the answer to GET /v1/healthz.
type Health struct {
	OK bool `json:"ok"`
}

// VerbList is the answer to GET /v1/verbs.
type VerbList struct {
	VMID int `json:"vmid"`
	// Presence is "required" or "off": whether mutating verbs need an
	// operator's passkey.
	Presence string     `json:"presence,omitempty"`
	Verbs    []VerbInfo `json:"verbs"`
}

// VerbInfo is one verb of VerbList.
type VerbInfo struct {
	Name     string `json:"name"`
	Mutating bool   `json:"mutating"`
}

// RunRequest is the optional body of POST /v1/verbs/{verb}.
type RunRequest struct {
	// Actor names who asked, for the audit line (e.g. "operator:alice").
	Actor string `json:"actor,omitempty"`
	// Args is guest-exec's argv (verbs.ValidateArgs); every other verb
	// refuses it, even empty.
	Args Argv `json:"args,omitempty"`
	// Presence is the operator's assertion over a challenge issued for
	// this verb; required for a mutating verb unless presence is off.
	Presence *Presence `json:"presence,omitempty"`
}

// Argv is an argv in JSON: an array of strings and nothing else. Decoding
// refuses what encoding/json would quietly change: a null element (it would
// become ""), and bytes that are not UTF-8 (they would become U+FFFD). A
// null or absent argv stays nil. verbs.ValidateArgs checks the limits.
type Argv []string

// ErrArgvJSON is returned by Argv.UnmarshalJSON.
var ErrArgvJSON = errors.New("args must be a JSON array of strings")

// UnmarshalJSON implements json.Unmarshaler.
func (a *Argv) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*a = nil
		return nil
	}
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: not valid UTF-8", ErrArgvJSON)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return ErrArgvJSON
	}
	out := make(Argv, len(raw))
	for i, r := range raw {
		if len(r) == 0 || r[0] != '"' {
			return fmt.Errorf("%w: element %d is not a string", ErrArgvJSON, i+1)
		}
		if err := json.Unmarshal(r, &out[i]); err != nil {
			return ErrArgvJSON
		}
	}
	*a = out
	return nil
}

// Presence is a WebAuthn assertion (navigator.credentials.get's answer)
// over a keyholder challenge; binary fields are unpadded base64url.
type Presence struct {
	ChallengeID       string `json:"challenge_id"`
	CredentialID      string `json:"credential_id"`
	ClientDataJSON    string `json:"client_data_json"`
	AuthenticatorData string `json:"authenticator_data"`
	Signature         string `json:"signature"`
}

// Challenge purposes of ChallengeRequest.
const (
	PurposeVerb  = "verb"
	PurposeLogin = "login"
)

// ChallengeRequest is the body of POST /v1/challenges: a verb (with its
// argv, for the one verb that takes one), or {"purpose":"login"}.
type ChallengeRequest struct {
	Purpose string   `json:"purpose,omitempty"`
	Verb    string   `json:"verb,omitempty"`
	Args    []string `json:"args,omitempty"`
	Actor   string   `json:"actor,omitempty"`
}

// Challenge is the 201 answer to POST /v1/challenges.
type Challenge struct {
	ChallengeID   string    `json:"challenge_id"`
	Challenge     string    `json:"challenge"`
	RPID          string    `json:"rp_id"`
	CredentialIDs []string  `json:"credential_ids"`
	ExpiresAt     time.Time `json:"expires_at"`
}

// LoginRequest is the body of POST /v1/logins.
type LoginRequest struct {
	Presence *Presence `json:"presence"`
}

// Login is the 200 answer to POST /v1/logins: who signed.
type Login struct {
	Operator string `json:"operator"`
}

// EnrollmentRequest is the body of POST /v1/enrollments.
type EnrollmentRequest struct {
	Name string `json:"name"`
}

// Enrollment is the 201 answer to POST /v1/enrollments: what
// navigator.credentials.create needs.
type Enrollment struct {
	EnrollmentID string `json:"enrollment_id"`
	Challenge    string `json:"challenge"`
	RPID         string `json:"rp_id"`
	UserID       string `json:"user_id"`
}

// EnrollmentFinish is the body of POST /v1/enrollments/{id}.
type EnrollmentFinish struct {
	Code              string `json:"code"`
	CredentialID      string `json:"credential_id"`
	ClientDataJSON    string `json:"client_data_json"`
	AttestationObject string `json:"attestation_object"`
}

// EnrollmentLine is the 201 answer to POST /v1/enrollments/{id}: the
// operators-file line, and whether the keyholder appended it itself.
type EnrollmentLine struct {
	Line     string `json:"line"`
	Appended bool   `json:"appended"`
}

// Result is the 200 answer to POST /v1/verbs/{verb}: the remote command ran
// and ended with ExitCode (which may be non-zero).
type Result struct {
	Verb       string `json:"verb"`
	VMID       int    `json:"vmid"`
	ExitCode   int    `json:"exit_code"`
	Output     string `json:"output"`
	DurationMS int64  `json:"duration_ms"`
	// Truncated is true when the output went over the keyholder's cap;
	// Output then ends with a line saying how much was dropped.
	Truncated bool `json:"truncated,omitempty"`
	// ContentType is set for binary output (screenshot: "image/png"), which
	// comes in OutputBase64 (standard base64) instead of Output: the JSON
	// then has no "output" field.
	ContentType  string `json:"content_type,omitempty"`
	OutputBase64 string `json:"output_base64,omitempty"`
	// Operator names whose passkey allowed a mutating verb (empty when
	// presence is off or the verb reads only).
	Operator string `json:"operator,omitempty"`
	// Image is set by the web, never the keyholder: where it stored a
	// screenshot in the session (/api/sessions/{id}/images/{name}).
	Image string `json:"image,omitempty"`
}

// MarshalJSON leaves "output" out of a binary answer.
func (r Result) MarshalJSON() ([]byte, error) {
	type plain Result
	if r.ContentType == "" {
		return json.Marshal(plain(r))
	}
	return json.Marshal(struct {
		plain
		Output *string `json:"output,omitempty"` // shadows plain's
	}{plain: plain(r)})
}

// ErrorBody is every non-200 answer of the API.
type ErrorBody struct {
	Error string `json:"error"`
	// Reason is the machine-readable code of a presence refusal (403).
	Reason string `json:"reason,omitempty"`
}
