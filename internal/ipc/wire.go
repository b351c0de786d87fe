package ipc

// The verb API's routes on keyholder.sock (HTTP/1.1, JSON).
const (
	PathHealthz = "/v1/healthz"
	PathVerbs   = "/v1/verbs"
	// PathVerbPrefix is followed by exactly one verb name: POST
	// /v1/verbs/{verb}.
	PathVerbPrefix = "/v1/verbs/"
	PathMetrics    = "/metrics"
)

// SocketName is the verb API's socket file in BREAKGLASS_SOCKET_DIR.
const SocketName = "keyholder.sock"

// AgentSocketName is the restricted ssh-agent's socket file in
// BREAKGLASS_SOCKET_DIR.
const AgentSocketName = "agent.sock"

// MaxRequestBody bounds a POST /v1/verbs/{verb} body; larger is refused.
const MaxRequestBody = 4 << 10

// MaxActorLen bounds RunRequest.Actor in bytes.
const MaxActorLen = 256

// Health is the answer to GET /v1/healthz.
type Health struct {
	OK bool `json:"ok"`
}

// VerbList is the answer to GET /v1/verbs.
type VerbList struct {
	VMID  int        `json:"vmid"`
	Verbs []VerbInfo `json:"verbs"`
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
}

// ErrorBody is every non-200 answer of the API.
type ErrorBody struct {
	Error string `json:"error"`
}
