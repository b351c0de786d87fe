package ipc

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"breakglass/internal/verbs"
)

// Limits of the client.
const (
	// maxResultBody bounds a verb answer: 1 MiB of output can take up to
	// six times that once JSON-escaped, and a screenshot's 8 MiB of PNG
	// four thirds of that in base64.
	maxResultBody = 12 << 20
	// maxSmallBody bounds every other JSON answer.
	maxSmallBody = 64 << 10
	// maxMetricsBody bounds the keyholder's metrics text.
	maxMetricsBody = 4 << 20
	// dialTimeout bounds connecting to the socket.
	dialTimeout = 2 * time.Second
)

// Errors of the client, checked with errors.Is.
var (
	// ErrUnreachable: nothing answered on the socket (no keyholder, or it
	// closed the connection without an answer).
	ErrUnreachable = errors.New("keyholder unreachable")
	// ErrBadVerb: the keyholder answered 400 (unknown verb, bad body).
	ErrBadVerb = errors.New("refused by the keyholder")
	// ErrBusy: the keyholder answered 409, a mutating verb is running.
	ErrBusy = errors.New("a mutating verb is already running")
	// ErrSSH: the keyholder answered 502, SSH to the Proxmox host failed.
	ErrSSH = errors.New("ssh to the Proxmox host failed")
	// ErrTimeout: the keyholder answered 504, the verb timed out or the
	// Proxmox host did not answer.
	ErrTimeout = errors.New("the Proxmox host did not answer in time")
	// ErrPresence: the keyholder answered 403, operator presence was
	// missing or did not verify (StatusError.Reason says which check).
	ErrPresence = errors.New("operator presence refused")
)

// StatusError is a non-200 answer of the keyholder. It matches ErrBadVerb,
// ErrBusy, ErrSSH or ErrTimeout under errors.Is, by status.
type StatusError struct {
	// Status is the HTTP status the keyholder answered.
	Status int
	// Message is the keyholder's {"error":…} text.
	Message string
	// Reason is the presence refusal's code, for a 403.
	Reason string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("keyholder answered %d: %s", e.Status, e.Message)
}

// Is maps the status to the client's sentinel errors.
func (e *StatusError) Is(target error) bool {
	switch e.Status {
	case http.StatusBadRequest:
		return target == ErrBadVerb
	case http.StatusConflict:
		return target == ErrBusy
	case http.StatusBadGateway:
		return target == ErrSSH
	case http.StatusGatewayTimeout:
		return target == ErrTimeout
	case http.StatusForbidden:
		return target == ErrPresence
	}
	return false
}

// Client talks to the keyholder's verb API over its Unix socket. It is safe
// for concurrent use. Bound every call with ctx: verbs may run for minutes.
type Client struct {
	hc *http.Client
}

// NewClient returns a client of the socket at socketPath. It does not dial
// until a call is made.
func NewClient(socketPath string) *Client {
	d := &net.Dialer{Timeout: dialTimeout}
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:           4,
		IdleConnTimeout:        30 * time.Second,
		DisableCompression:     true,
		ForceAttemptHTTP2:      false,
		MaxResponseHeaderBytes: 16 << 10,
	}
	return &Client{hc: &http.Client{Transport: tr}}
}

// Close drops idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Healthz returns nil when the keyholder answers GET /v1/healthz with ok.
func (c *Client) Healthz(ctx context.Context) error {
	var h Health
	if err := c.do(ctx, http.MethodGet, PathHealthz, nil, maxSmallBody, &h); err != nil {
		return err
	}
	if !h.OK {
		return fmt.Errorf("keyholder healthz: %w", ErrUnreachable)
	}
	return nil
}

// Verbs returns the keyholder's verb list and VM id.
func (c *Client) Verbs(ctx context.Context) (VerbList, error) {
	var vl VerbList
	err := c.do(ctx, http.MethodGet, PathVerbs, nil, maxSmallBody, &vl)
	return vl, err
}

// Run asks the keyholder to run verb for actor. A verb that verbs.Parse
// refuses is refused here, before any I/O, with an error wrapping
// verbs.ErrUnknown. A non-200 answer is a *StatusError.
func (c *Client) Run(ctx context.Context, verb, actor string) (Result, error) {
	return c.RunRequest(ctx, verb, RunRequest{Actor: actor})
}

// RunRequest asks the keyholder to run verb with req (actor, args,
// presence).
func (c *Client) RunRequest(ctx context.Context, verb string, req RunRequest) (Result, error) {
	if _, err := verbs.Parse(verb); err != nil {
		return Result{}, err
	}
	body, err := encode(req)
	if err != nil {
		return Result{}, fmt.Errorf("encode run request: %w", err)
	}
	var res Result
	err = c.do(ctx, http.MethodPost, PathVerbPrefix+url.PathEscape(verb), body, maxResultBody, &res)
	return res, err
}

// Challenge asks for a presence challenge (201).
func (c *Client) Challenge(ctx context.Context, req ChallengeRequest) (Challenge, error) {
	var ch Challenge
	err := c.post(ctx, PathChallenges, req, &ch)
	return ch, err
}

// Login has the keyholder verify a sign-in assertion and returns who
// signed.
func (c *Client) Login(ctx context.Context, p Presence) (Login, error) {
	var l Login
	err := c.post(ctx, PathLogins, LoginRequest{Presence: &p}, &l)
	return l, err
}

// BeginEnrollment starts enrolling a passkey for name.
func (c *Client) BeginEnrollment(ctx context.Context, name string) (Enrollment, error) {
	var e Enrollment
	err := c.post(ctx, PathEnrollments, EnrollmentRequest{Name: name}, &e)
	return e, err
}

// FinishEnrollment sends the new passkey and the code for enrollment id.
func (c *Client) FinishEnrollment(ctx context.Context, id string, f EnrollmentFinish) (EnrollmentLine, error) {
	var l EnrollmentLine
	err := c.post(ctx, PathEnrollmentPrefix+url.PathEscape(id), f, &l)
	return l, err
}

// post sends v as JSON and decodes the 200 or 201 answer into out.
func (c *Client) post(ctx context.Context, path string, v, out any) error {
	body, err := encode(v)
	if err != nil {
		return fmt.Errorf("encode %s request: %w", path, err)
	}
	return c.do(ctx, http.MethodPost, path, body, maxSmallBody, out)
}

// Metrics returns the keyholder's GET /metrics body (Prometheus text
// format) and its Content-Type.
func (c *Client) Metrics(ctx context.Context) ([]byte, string, error) {
	resp, err := c.send(ctx, http.MethodGet, PathMetrics, nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	b, err := readLimited(resp.Body, maxMetricsBody)
	if err != nil {
		return nil, "", fmt.Errorf("read keyholder metrics: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, "", statusError(resp.StatusCode, b)
	}
	return b, resp.Header.Get("Content-Type"), nil
}

// do sends one request and decodes a 200 answer into out.
func (c *Client) do(ctx context.Context, method, path string, body []byte, limit int64, out any) error {
	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := readLimited(resp.Body, limit)
	if err != nil {
		return fmt.Errorf("read keyholder answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusCreated {
		return statusError(resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("decode keyholder answer: %w", err)
	}
	return nil
}

func (c *Client) send(ctx context.Context, method, path string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://keyholder"+path, rd)
	if err != nil {
		return nil, fmt.Errorf("build keyholder request: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("keyholder %s %s: %w", method, path, ctxErr)
		}
		return nil, fmt.Errorf("keyholder %s %s: %w: %w", method, path, ErrUnreachable, err)
	}
	return resp, nil
}

// readLimited reads r up to limit bytes and fails beyond.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("answer longer than %d bytes", limit)
	}
	return b, nil
}

// statusError builds the error for a non-200 answer.
func statusError(status int, body []byte) error {
	var eb ErrorBody
	msg := http.StatusText(status)
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error != "" {
		msg = eb.Error
	}
	return &StatusError{Status: status, Message: msg, Reason: eb.Reason}
}

// encode is v as compact JSON without the HTML escaping json.Marshal does:
// a guest-exec argv full of <, > and & must fit the body cap it was
// validated for, not grow sixfold on the way.
func encode(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
