package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/power"
	"breakglass/internal/session"
	"breakglass/internal/uuid"
)

// Hostile input against the operator's listener as cmd/web builds it: the
// api handler with the power-verb routes mounted, behind an *http.Server
// with header and body limits and read timeouts (short ones here, so the
// slow-client cases end quickly). Every request goes over a raw TCP
// connection, so nothing on the client side cleans up what is sent.

const (
	hostileToken        = "tok3n-hostile"
	hostileHeaderBytes  = 64 << 10 // as cmd/web's operator listener
	hostileReadHeader   = 300 * time.Millisecond
	hostileReadTimeout  = 1 * time.Second
	hostileReplyTimeout = 10 * time.Second
)

// fakeVerbKeyholder answers verbs at once, as a keyholder that is up.
type fakeVerbKeyholder struct{}

func (fakeVerbKeyholder) Verbs(context.Context) (ipc.VerbList, error) {
	return ipc.VerbList{VMID: 102, Verbs: []ipc.VerbInfo{{Name: "status"}, {Name: "reset", Mutating: true}}}, nil
}

func (fakeVerbKeyholder) RunRequest(_ context.Context, verb string, _ ipc.RunRequest) (ipc.Result, error) {
	return ipc.Result{Verb: verb, VMID: 102, Output: "status: running\n"}, nil
}

// hostileServer is one operator listener with its session manager.
type hostileServer struct {
	addr     string
	sessions *session.Manager
}

// startHostile serves the web's operator handler on 127.0.0.1:0 with
// trusted the identity header's trusted proxies.
func startHostile(t *testing.T, trusted []netip.Prefix) *hostileServer {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := session.New(session.Config{Dir: t.TempDir(), Runner: &fakeRunner{script: quickTurn}, Registerer: reg})
	require.NoError(t, err)
	svc, err := power.New(power.Config{Keyholder: fakeVerbKeyholder{}, Transcript: m, Registerer: reg})
	require.NoError(t, err)
	s, err := New(Config{
		Sessions:       m,
		Keyholder:      &fakeKeyholder{},
		BearerToken:    hostileToken,
		TrustedProxies: trusted,
		KeepAlive:      50 * time.Millisecond,
		Routes:         slices.Concat(svc.Routes(), svc.AgentRoutes()),
		Registerer:     reg,
		Gatherer:       reg,
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	hs := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: hostileReadHeader,
		ReadTimeout:       hostileReadTimeout,
		WriteTimeout:      5 * time.Second,
		IdleTimeout:       5 * time.Second,
		MaxHeaderBytes:    hostileHeaderBytes,
		ErrorLog:          log.New(io.Discard, "", 0),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	t.Cleanup(func() {
		require.NoError(t, m.Close())
		require.NoError(t, hs.Close())
		assert.ErrorIs(t, <-served, http.ErrServerClosed)
	})
	return &hostileServer{addr: ln.Addr().String(), sessions: m}
}

// roundTrip writes raw on a new connection and reads one response. The
// write runs on its own so a server that answers (and closes) before
// reading a huge request is not mistaken for a hang.
func (h *hostileServer) roundTrip(t *testing.T, raw string) (*http.Response, string, error) {
	t.Helper()
	c, err := net.Dial("tcp", h.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(hostileReplyTimeout)))
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = io.WriteString(c, raw)
	}()
	defer func() { <-wrote }()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		_ = c.Close()
		return nil, "", err
	}
	defer resp.Body.Close()
	var b []byte
	if resp.Header.Get("Content-Type") == "text/event-stream" {
		// A stream never ends on its own: read its first chunk only.
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b = buf[:n]
	} else {
		b, _ = io.ReadAll(resp.Body)
	}
	_ = c.Close()
	return resp, string(b), nil
}

// healthy fails t unless the server still answers /healthz and an
// authenticated session list.
func (h *hostileServer) healthy(t *testing.T) {
	t.Helper()
	resp, _, err := h.roundTrip(t, "GET /healthz HTTP/1.1\r\nHost: breakglass.test\r\nConnection: close\r\n\r\n")
	require.NoError(t, err, "the server stopped answering /healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	resp, _, err = h.roundTrip(t, "GET /api/sessions HTTP/1.1\r\nHost: breakglass.test\r\nAuthorization: Bearer "+hostileToken+"\r\nConnection: close\r\n\r\n")
	require.NoError(t, err, "the server stopped answering the API")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// hostileReq is one request of the table. Raw header lines are written as
// they are (so they may repeat, or carry bytes a client library refuses).
type hostileReq struct {
	method string
	// target is the request-target; {id} becomes a fresh session's id.
	target string
	// header lines, "Name: value" each; the operator's identity header is
	// added unless noIdentity is set.
	header     []string
	noIdentity bool
	body       string
	// chunked sends the body with Transfer-Encoding: chunked instead of a
	// Content-Length.
	chunked bool
	// raw, when set, is the whole request, written as it is ({id} replaced).
	raw string
}

func (q hostileReq) render(id string) string {
	if q.raw != "" {
		return strings.ReplaceAll(q.raw, "{id}", id)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: breakglass.test\r\nConnection: close\r\n", q.method, strings.ReplaceAll(q.target, "{id}", id))
	if !q.noIdentity {
		b.WriteString("X-Authentik-Username: alice\r\n")
	}
	for _, h := range q.header {
		b.WriteString(h + "\r\n")
	}
	body := strings.ReplaceAll(q.body, "{id}", id)
	switch {
	case q.chunked:
		b.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		for len(body) > 0 {
			n := min(len(body), 16<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
	case body != "":
		fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	default:
		b.WriteString("\r\n")
	}
	return b.String()
}

func post(target, body string, header ...string) hostileReq {
	return hostileReq{method: http.MethodPost, target: target, body: body, header: append([]string{"Content-Type: application/json"}, header...)}
}

func patch(target, body string, header ...string) hostileReq {
	return hostileReq{method: http.MethodPatch, target: target, body: body, header: append([]string{"Content-Type: application/json"}, header...)}
}

func get(target string, header ...string) hostileReq {
	return hostileReq{method: http.MethodGet, target: target, header: header}
}

// TestHostileRequests sends requests an attacker (or a broken client or
// proxy) could send to the operator's listener. Each gets its documented
// status, nothing panics or hangs, and the server answers normally after.
func TestHostileRequests(t *testing.T) {
	const (
		okStream = http.StatusOK
		v1UUID   = "6ba7b810-9dad-11d1-80b4-00c04fd430c8"
	)
	big := func(n int) string { return strings.Repeat("a", n) }
	tests := []struct {
		name string
		desc string
		req  hostileReq
		want int
		// untrusted sends to a listener that trusts only 10.42.0.0/16 as
		// the proxy, so a loopback peer is not one.
		untrusted bool
		// archived archives the row's session first.
		archived bool
	}{
		// Oversized headers and bodies.
		{name: "header-over-max", desc: "net/http allows 4 KiB over MaxHeaderBytes", req: get("/api/sessions", "X-Pad: "+big(hostileHeaderBytes+4097)), want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "many-headers-over-max", req: get("/api/sessions", strings.Split(strings.Repeat("X-Pad: "+big(60)+"\n", 2000), "\n")[:2000]...), want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "identity-header-over-max", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Authentik-Username: " + big(hostileHeaderBytes+4097)}}, want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "identity-name-too-long", desc: "under the header limit, over the identity's own", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Authentik-Username: " + big(4096)}}, want: http.StatusUnauthorized},
		{name: "url-over-max", req: get("/api/sessions/" + big(hostileHeaderBytes+8192)), want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "prompt-over-64k", req: post("/api/sessions/{id}/prompt", `{"text":"`+big(session.MaxPromptBytes+1)+`"}`), want: http.StatusRequestEntityTooLarge},
		{name: "prompt-exactly-64k", req: post("/api/sessions/{id}/prompt", `{"text":"`+big(session.MaxPromptBytes)+`"}`), want: http.StatusAccepted},
		{name: "prompt-body-over-limit", desc: "whitespace padding: the body limit, before any decoding", req: post("/api/sessions/{id}/prompt", strings.Repeat(" ", maxPromptBody)+`{"text":"hi"}`), want: http.StatusRequestEntityTooLarge},
		{name: "prompt-escapes-over-64k", desc: "small escapes that decode to more than 64 KiB", req: post("/api/sessions/{id}/prompt", `{"text":"`+strings.Repeat(`\u00e9`, session.MaxPromptBytes/2+1)+`"}`), want: http.StatusRequestEntityTooLarge},
		{name: "prompt-chunked-over-limit", req: hostileReq{method: "POST", target: "/api/sessions/{id}/prompt", chunked: true, body: `{"text":"` + big(maxPromptBody) + `"}`}, want: http.StatusRequestEntityTooLarge},
		{name: "create-body-over-4k", req: post("/api/sessions", `{"x":"`+big(maxSmallBody)+`"}`), want: http.StatusRequestEntityTooLarge},
		{name: "cancel-body-over-4k", desc: "the body is ignored; nothing is running", req: post("/api/sessions/{id}/cancel", big(maxSmallBody*4)), want: http.StatusConflict},
		{name: "verb-body-over-4k", desc: "the verb routes, like every route, answer 413 body_too_large", req: post("/api/vm/status", `{"session_id":"`+big(5000)+`"}`), want: http.StatusRequestEntityTooLarge},
		{name: "approval-body-over-4k", desc: "no such approval in this session: refused whatever the body", req: post("/api/sessions/{id}/approvals/a1", `{"approve":true,"x":"`+big(5000)+`"}`), want: http.StatusNotFound},

		// The operator's answer to a permission question (docs/operator-loop.md).
		{name: "permission-unknown", desc: "no such question in this session", req: post("/api/sessions/{id}/permissions/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", `{"allow":true}`), want: http.StatusNotFound},
		{name: "permission-not-uuid", req: post("/api/sessions/{id}/permissions/r1", `{"allow":true}`), want: http.StatusNotFound},
		{name: "permission-v1-uuid", req: post("/api/sessions/{id}/permissions/"+v1UUID, `{"allow":true}`), want: http.StatusNotFound},
		{name: "permission-traversal", req: post("/api/sessions/{id}/permissions/..%2f..%2fsession.json", `{"allow":true}`), want: http.StatusNotFound},
		{name: "permission-huge-note", desc: "the note's limit is 4 KiB", req: post("/api/sessions/{id}/permissions/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", `{"allow":false,"message":"`+big(session.MaxPermissionMessage+1)+`"}`), want: http.StatusRequestEntityTooLarge},
		{name: "permission-body-over-limit", req: post("/api/sessions/{id}/permissions/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", `{"allow":false,"message":"`+big(40<<10)+`"}`), want: http.StatusRequestEntityTooLarge},
		{name: "permission-no-allow", req: post("/api/sessions/{id}/permissions/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", `{"message":"x"}`), want: http.StatusBadRequest},
		{name: "permission-remember-rule", desc: "no field can make an answer outlive itself", req: post("/api/sessions/{id}/permissions/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", `{"allow":true,"updatedPermissions":[{"type":"addRules"}]}`), want: http.StatusBadRequest},
		{name: "permission-no-identity", desc: "the agent has no operator identity", req: hostileReq{method: "POST", target: "/api/sessions/{id}/permissions/3f2b1c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d", noIdentity: true, body: `{"allow":true}`, header: []string{"Content-Type: application/json"}}, want: http.StatusUnauthorized},
		{name: "mode-unknown", req: patch("/api/sessions/{id}", `{"mode":"yolo"}`), want: http.StatusBadRequest},
		{name: "mode-huge", req: patch("/api/sessions/{id}", `{"mode":"`+big(20<<10)+`"}`), want: http.StatusRequestEntityTooLarge},

		// Invalid UTF-8 and control bytes.
		{name: "prompt-invalid-utf8", desc: "decoded with U+FFFD in place of the bad bytes", req: post("/api/sessions/{id}/prompt", "{\"text\":\"\xff\xfe\xc0\xaf\"}"), want: http.StatusAccepted},
		{name: "json-key-invalid-utf8", req: post("/api/sessions", "{\"\xff\":1}"), want: http.StatusBadRequest},
		{name: "json-bare-invalid-utf8", req: post("/api/sessions/{id}/prompt", "\xff\xfe"), want: http.StatusBadRequest},
		{name: "header-value-ctl", req: get("/api/sessions", "X-Note: a\x01b"), want: http.StatusBadRequest},
		{name: "header-name-space", req: get("/api/sessions", "Bad Header: x"), want: http.StatusBadRequest},
		{name: "identity-ctl", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Authentik-Username: al\x7fice"}}, want: http.StatusBadRequest},
		{name: "identity-invalid-utf8", desc: "a name that is not UTF-8 is no name: refused, never logged as U+FFFD", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Authentik-Username: al\xffice"}}, want: http.StatusUnauthorized},
		{name: "last-event-id-invalid-utf8", req: get("/api/sessions/{id}/stream", "Last-Event-ID: \xff\xfe"), want: http.StatusBadRequest},

		// Last-Event-ID and ?last_event_id=.
		{name: "lei-beyond-int64", req: get("/api/sessions/{id}/stream", "Last-Event-ID: 99999999999999999999"), want: http.StatusBadRequest},
		{name: "lei-max-int64", desc: "past the end: replays nothing, tails", req: get("/api/sessions/{id}/stream", "Last-Event-ID: 9223372036854775807"), want: okStream},
		{name: "lei-negative", req: get("/api/sessions/{id}/stream", "Last-Event-ID: -1"), want: http.StatusBadRequest},
		{name: "lei-plus-sign", req: get("/api/sessions/{id}/stream", "Last-Event-ID: +1"), want: http.StatusBadRequest},
		{name: "lei-non-numeric", req: get("/api/sessions/{id}/stream", "Last-Event-ID: abc"), want: http.StatusBadRequest},
		{name: "lei-hex", req: get("/api/sessions/{id}/stream", "Last-Event-ID: 0x10"), want: http.StatusBadRequest},
		{name: "lei-inner-space", req: get("/api/sessions/{id}/stream", "Last-Event-ID: 1 2"), want: http.StatusBadRequest},
		{name: "lei-1mib", req: get("/api/sessions/{id}/stream", "Last-Event-ID: "+strings.Repeat("9", 1<<20)), want: http.StatusRequestHeaderFieldsTooLarge},
		{name: "lei-query-huge", req: get("/api/sessions/{id}/stream?last_event_id=" + strings.Repeat("9", 50<<10)), want: http.StatusBadRequest},
		{name: "lei-query-negative", req: get("/api/sessions/{id}/stream?last_event_id=-5"), want: http.StatusBadRequest},
		{name: "lei-header-and-query", desc: "the header wins; a bad query is not read", req: get("/api/sessions/{id}/stream?last_event_id=abc", "Last-Event-ID: 0"), want: okStream},

		// The recovery ladder: args only for guest-exec, within the
		// limits and the verb's own cap; images only by their one name shape.
		{name: "args-on-status", req: post("/api/vm/status", `{"args":["x"]}`), want: http.StatusBadRequest},
		{name: "args-empty-on-reset", req: post("/api/vm/reset", `{"args":[]}`), want: http.StatusBadRequest},
		{name: "guest-exec-without-args", req: post("/api/vm/guest-exec", `{}`), want: http.StatusBadRequest},
		{name: "guest-exec-null-arg", desc: "a null element would quietly become \"\"", req: post("/api/vm/guest-exec", `{"args":["id",null]}`), want: http.StatusBadRequest},
		{name: "guest-exec-invalid-utf8-arg", desc: "would quietly become U+FFFD", req: post("/api/vm/guest-exec", "{\"args\":[\"id\",\"\xff\"]}"), want: http.StatusBadRequest},
		{name: "guest-exec-nul-arg", req: post("/api/vm/guest-exec", `{"args":["echo","a\u0000b"]}`), want: http.StatusBadRequest},
		{name: "guest-exec-17-args", req: post("/api/vm/guest-exec", `{"args":[`+strings.TrimSuffix(strings.Repeat(`"a",`, 17), ",")+`]}`), want: http.StatusBadRequest},
		{name: "guest-exec-body-over-16k", req: post("/api/vm/guest-exec", `{"args":["`+big(17<<10)+`"]}`), want: http.StatusRequestEntityTooLarge},
		{name: "guest-exec-argv", desc: "shell syntax is one argument", req: post("/api/vm/guest-exec", `{"args":["echo","$(id) ; rm -rf /"]}`), want: http.StatusOK},
		{name: "image-dot-dot", req: get("/api/sessions/{id}/images/..%2fsession.json"), want: http.StatusNotFound},
		{name: "image-other-name", req: get("/api/sessions/{id}/images/events.jsonl"), want: http.StatusNotFound},
		{name: "image-missing", req: get("/api/sessions/{id}/images/screenshot-1-00000000.png"), want: http.StatusNotFound},
		{name: "image-bad-session", req: get("/api/sessions/" + v1UUID + "/images/screenshot-1-00000000.png"), want: http.StatusNotFound},
		{name: "health-post", req: post("/api/vm/health", `{}`), want: http.StatusBadRequest},

		// Path tricks: never a redirect, never a cleaned path, 404.
		{name: "dot-dot", req: get("/api/sessions/../sessions"), want: http.StatusNotFound},
		{name: "encoded-dot-dot", req: get("/api/sessions/%2e%2e/stream"), want: http.StatusNotFound},
		{name: "double-slash", req: get("//api/sessions"), want: http.StatusNotFound},
		{name: "encoded-slash", req: get("/api/sessions/{id}%2Fstream"), want: http.StatusNotFound},
		{name: "trailing-slash", req: get("/api/sessions/"), want: http.StatusNotFound},
		{name: "id-trailing-slash", req: get("/api/sessions/{id}/"), want: http.StatusNotFound},
		{name: "non-v4-uuid", req: get("/api/sessions/" + v1UUID), want: http.StatusNotFound},
		{name: "uppercase-uuid", req: hostileReq{raw: "GET /api/sessions/{ID} HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\nConnection: close\r\n\r\n"}, want: http.StatusNotFound},
		{name: "encoded-nul", req: get("/api/sessions/%00"), want: http.StatusNotFound},
		{name: "backslash-dot-dot", req: get(`/api/sessions/..\..\etc\passwd`), want: http.StatusNotFound},
		{name: "absolute-form-other-host", desc: "served as its path; the host is not used", req: hostileReq{raw: "GET http://evil.example/api/sessions/" + v1UUID + " HTTP/1.1\r\nHost: evil.example\r\nX-Authentik-Username: alice\r\nConnection: close\r\n\r\n"}, want: http.StatusNotFound},

		// Method tricks.
		{name: "get-on-prompt", req: get("/api/sessions/{id}/prompt"), want: http.StatusNotFound},
		{name: "get-on-verb", desc: "a GET never runs a verb", req: get("/api/vm/reset"), want: http.StatusNotFound},
		{name: "trace", desc: "no route under /api/ answers another method: 404", req: hostileReq{method: "TRACE", target: "/api/sessions"}, want: http.StatusNotFound},
		{name: "options", req: hostileReq{method: "OPTIONS", target: "/api/sessions"}, want: http.StatusNotFound},
		{name: "head-on-stream", req: hostileReq{method: "HEAD", target: "/api/sessions/{id}/stream"}, want: http.StatusNotFound},
		{name: "delete-session", desc: "DELETE archives: hidden, files kept", req: hostileReq{method: "DELETE", target: "/api/sessions/{id}"}, want: http.StatusOK},
		{name: "delete-unknown-session", req: hostileReq{method: "DELETE", target: "/api/sessions/" + uuid.New()}, want: http.StatusNotFound},
		{name: "delete-non-v4", req: hostileReq{method: "DELETE", target: "/api/sessions/" + v1UUID}, want: http.StatusNotFound},
		{name: "lowercase-method", req: hostileReq{method: "post", target: "/api/sessions"}, want: http.StatusNotFound},
		{name: "method-override-header", desc: "the override is ignored: a GET lists", req: get("/api/sessions", "X-HTTP-Method-Override: POST"), want: http.StatusOK},
		{name: "method-override-query", req: get("/api/vm/reset?_method=POST"), want: http.StatusNotFound},
		{name: "connect", req: hostileReq{raw: "CONNECT 10.0.10.10:22 HTTP/1.1\r\nHost: 10.0.10.10:22\r\nX-Authentik-Username: alice\r\n\r\n"}, want: http.StatusNotFound},

		// Header spoofing.
		{name: "turn-token-on-operator-route", desc: "the agent's token never stands for the operator", req: get("/api/sessions", "X-Breakglass-Turn-Token: "+big(43)), want: http.StatusForbidden},
		{name: "turn-token-on-verb-route", req: post("/api/vm/status", "", "X-Breakglass-Turn-Token: "+big(43)), want: http.StatusForbidden},
		{name: "turn-token-on-page", req: get("/", "X-Breakglass-Turn-Token: x"), want: http.StatusForbidden},
		{name: "two-identity-headers", req: get("/api/sessions", "X-Authentik-Username: mallory"), want: http.StatusUnauthorized},
		{name: "empty-identity", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Authentik-Username:"}}, want: http.StatusUnauthorized},
		{name: "blank-identity", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Authentik-Username: \t "}}, want: http.StatusUnauthorized},
		{name: "no-identity", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true}, want: http.StatusUnauthorized},
		{name: "xff-from-untrusted-peer", desc: "X-Forwarded-For naming a trusted proxy does not make the peer one", untrusted: true, req: get("/api/sessions", "X-Forwarded-For: 10.42.0.5", "X-Real-IP: 10.42.0.5", "Forwarded: for=10.42.0.5"), want: http.StatusUnauthorized},
		{name: "xff-without-identity", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"X-Forwarded-For: 127.0.0.1", "X-Forwarded-User: alice"}}, want: http.StatusUnauthorized},
		{name: "authorization-basic", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Basic " + hostileToken}}, want: http.StatusUnauthorized},
		{name: "bearer-token-plus-word", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer " + hostileToken + " x"}}, want: http.StatusUnauthorized},
		{name: "bearer-token-trailing-space", desc: "whitespace around a field value is not part of it (RFC 9110 §5.5): the same token", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer " + hostileToken + " \t"}}, want: http.StatusOK},
		{name: "bearer-scheme-case", desc: "the scheme is case-insensitive (RFC 9110 §11.1)", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: bEARER " + hostileToken}}, want: http.StatusOK},
		{name: "bearer-token-uppercase", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer " + strings.ToUpper(hostileToken)}}, want: http.StatusUnauthorized},
		{name: "bearer-double-space", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer  " + hostileToken}}, want: http.StatusUnauthorized},
		{name: "bearer-token-prefix", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer " + hostileToken[:5]}}, want: http.StatusUnauthorized},
		{name: "bearer-empty", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer"}}, want: http.StatusUnauthorized},
		{name: "two-authorization", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer " + hostileToken, "Authorization: Bearer " + hostileToken}}, want: http.StatusUnauthorized},
		{name: "bad-bearer-with-identity", desc: "a wrong token is not rescued by the header", req: get("/api/sessions", "Authorization: Bearer nope"), want: http.StatusUnauthorized},
		{name: "bearer-good", req: hostileReq{method: "GET", target: "/api/sessions", noIdentity: true, header: []string{"Authorization: Bearer " + hostileToken}}, want: http.StatusOK},
		{name: "cross-site-post", req: post("/api/sessions", "", "Origin: https://evil.example", "Sec-Fetch-Site: cross-site"), want: http.StatusForbidden},
		{name: "same-site-post", desc: "a sibling app on the same domain", req: post("/api/sessions/{id}/prompt", `{"text":"reset it"}`, "Origin: https://other.breakglass.test", "Sec-Fetch-Site: same-site"), want: http.StatusForbidden},
		{name: "origin-null-post", req: post("/api/vm/reset", "", "Origin: null"), want: http.StatusForbidden},
		{name: "origin-other-host-post", req: post("/api/sessions/{id}/cancel", "", "Origin: http://evil.example"), want: http.StatusForbidden},
		{name: "same-origin-post", req: post("/api/sessions", "", "Origin: http://breakglass.test", "Sec-Fetch-Site: same-origin"), want: http.StatusCreated},

		// Content-type and JSON tricks.
		{name: "form-body", req: post("/api/sessions/{id}/prompt", "text=hi", "Content-Type: application/x-www-form-urlencoded"), want: http.StatusBadRequest},
		{name: "multipart-body", req: post("/api/sessions/{id}/prompt", "--b\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi\r\n--b--\r\n", "Content-Type: multipart/form-data; boundary=b"), want: http.StatusBadRequest},
		{name: "json-array", req: post("/api/sessions/{id}/prompt", `["hi"]`), want: http.StatusBadRequest},
		{name: "json-null", desc: "null leaves the text empty", req: post("/api/sessions/{id}/prompt", `null`), want: http.StatusBadRequest},
		{name: "json-duplicate-key", desc: "the last one wins, and it is empty", req: post("/api/sessions/{id}/prompt", `{"text":"reset","text":""}`), want: http.StatusBadRequest},
		{name: "json-unknown-field", req: post("/api/sessions/{id}/prompt", `{"text":"hi","actor":"root"}`), want: http.StatusBadRequest},
		{name: "json-trailing-object", req: post("/api/sessions/{id}/prompt", `{"text":"hi"}{"text":"again"}`), want: http.StatusBadRequest},
		{name: "json-deep-nesting", req: post("/api/sessions/{id}/prompt", `{"text":`+strings.Repeat("[", 20000)+strings.Repeat("]", 20000)+`}`), want: http.StatusBadRequest},
		{name: "json-number-text", req: post("/api/sessions/{id}/prompt", `{"text":1e999}`), want: http.StatusBadRequest},
		{name: "verb-session-id-traversal", req: post("/api/vm/status", `{"session_id":"../../etc"}`), want: http.StatusBadRequest},
		{name: "verb-unknown", req: post("/api/vm/STATUS", ""), want: http.StatusBadRequest},
		{name: "content-length-and-chunked", desc: "Transfer-Encoding wins and the Content-Length is dropped (RFC 9112 §6.3): an empty body", req: hostileReq{raw: "POST /api/sessions HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"}, want: http.StatusCreated},
		{name: "two-content-lengths", req: hostileReq{raw: "POST /api/sessions HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"}, want: http.StatusBadRequest},
		{name: "negative-content-length", req: hostileReq{raw: "POST /api/sessions HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\nContent-Length: -1\r\n\r\n"}, want: http.StatusBadRequest},

		// Search, rename and export.
		{name: "search-huge", req: get("/api/sessions?q=" + big(16<<10)), want: http.StatusBadRequest},
		{name: "search-just-over", req: get("/api/sessions?q=" + big(session.MaxQueryBytes+1)), want: http.StatusBadRequest},
		{name: "search-regex-metacharacters", desc: "plain text, never a pattern", req: get("/api/sessions?q=" + url.QueryEscape(`(a+)+$[^\]*.*?{1,99999}`)), want: http.StatusOK},
		{name: "search-invalid-utf8", req: get("/api/sessions?q=%ff%fe%c0%af"), want: http.StatusBadRequest},
		{name: "search-nul", req: get("/api/sessions?q=%00"), want: http.StatusOK},
		{name: "search-two-q", req: get("/api/sessions?q=a&q=b"), want: http.StatusBadRequest},
		{name: "search-archived-word", req: get("/api/sessions?archived=yes"), want: http.StatusBadRequest},
		{name: "title-empty", req: patch("/api/sessions/{id}", `{"title":""}`), want: http.StatusBadRequest},
		{name: "title-blank", req: patch("/api/sessions/{id}", `{"title":" \t "}`), want: http.StatusBadRequest},
		{name: "title-10k", req: patch("/api/sessions/{id}", `{"title":"`+big(10<<10)+`"}`), want: http.StatusBadRequest},
		{name: "title-control-chars", req: patch("/api/sessions/{id}", `{"title":"a\u0000b\u001b[2J\r\n"}`), want: http.StatusBadRequest},
		{name: "title-invalid-utf8", desc: "decoded as U+FFFD, which a title refuses", req: patch("/api/sessions/{id}", "{\"title\":\"a\xffb\"}"), want: http.StatusBadRequest},
		{name: "title-unknown-session", req: patch("/api/sessions/"+uuid.New(), `{"title":"x"}`), want: http.StatusNotFound},
		{name: "title-ok", req: patch("/api/sessions/{id}", `{"title":"Disk full"}`), want: http.StatusOK},
		{name: "export-archived", archived: true, req: get("/api/sessions/{id}/export?format=md"), want: http.StatusOK},
		{name: "export-archived-json", archived: true, req: get("/api/sessions/{id}/export?format=json"), want: http.StatusOK},
		{name: "export-unknown", req: get("/api/sessions/" + uuid.New() + "/export"), want: http.StatusNotFound},
		{name: "export-non-v4", req: get("/api/sessions/" + v1UUID + "/export?format=json"), want: http.StatusNotFound},
		{name: "export-bad-format", req: get("/api/sessions/{id}/export?format=html"), want: http.StatusBadRequest},
		{name: "restore-unknown", req: post("/api/sessions/"+uuid.New()+"/restore", ""), want: http.StatusNotFound},
		{name: "prompt-archived", archived: true, req: post("/api/sessions/{id}/prompt", `{"text":"hi"}`), want: http.StatusConflict},
	}
	require.GreaterOrEqual(t, len(tests), 40)

	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	srv := startHostile(t, loopback)
	other := startHostile(t, []netip.Prefix{netip.MustParsePrefix("10.42.0.0/16")})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := srv
			if tc.untrusted {
				s = other
			}
			info, err := s.sessions.Create()
			require.NoError(t, err)
			if tc.archived {
				_, err := s.sessions.Archive(info.ID)
				require.NoError(t, err)
			}
			raw := strings.ReplaceAll(tc.req.render(info.ID), "{ID}", strings.ToUpper(info.ID))
			resp, body, err := s.roundTrip(t, raw)
			require.NoError(t, err, "no answer: %s", tc.desc)
			assert.Equal(t, tc.want, resp.StatusCode, "%s\nbody: %.300s", tc.desc, body)
			if resp.StatusCode >= 400 && resp.Header.Get("Content-Type") == "application/json" && body != "" {
				var eb wire.ErrorBody
				require.NoError(t, json.Unmarshal([]byte(body), &eb), "%.300s", body)
				assert.NotEmpty(t, eb.Code, "every error body has a code: %.300s", body)
				assert.NotEmpty(t, eb.Error, "and a message: %.300s", body)
			}
			s.healthy(t)
		})
	}
}

// readUntilClosed reads c until the server closes it, failing t if that
// has not happened by the deadline. It returns what was read.
func readUntilClosed(t *testing.T, c net.Conn, within time.Duration) string {
	t.Helper()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(within)))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the server kept a slow connection open for more than %v (read %q)", within, b)
	}
	return string(b)
}

// TestHostileSlowClients is the slowloris attack: a client that sends a
// request a few bytes at a time, or stops half-way, to hold connections
// open until the server runs out. The server's ReadHeaderTimeout and
// ReadTimeout close each one.
func TestHostileSlowClients(t *testing.T) {
	srv := startHostile(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	info, err := srv.sessions.Create()
	require.NoError(t, err)
	prompt := "POST /api/sessions/" + info.ID + "/prompt HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n"
	tests := []struct {
		name string
		// sent is what the client sends before it stalls.
		sent string
		// within bounds how long the server may keep the connection.
		within time.Duration
		// wantStatus is the answer's status line, if one is expected.
		wantStatus string
	}{
		{name: "nothing-sent", sent: "", within: hostileReadHeader + 5*time.Second},
		{name: "half-request-line", sent: "GET /api/sess", within: hostileReadHeader + 5*time.Second},
		{name: "headers-never-end", sent: "GET /api/sessions HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\n", within: hostileReadHeader + 5*time.Second},
		{name: "body-stalls", sent: prompt + `{"text":"`, within: hostileReadTimeout + 5*time.Second, wantStatus: "HTTP/1.1 400"},
		{name: "chunked-body-stalls", sent: strings.Replace(prompt, "Content-Length: 100", "Transfer-Encoding: chunked", 1) + "40\r\n{\"text\":", within: hostileReadTimeout + 5*time.Second, wantStatus: "HTTP/1.1 400"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", srv.addr)
			require.NoError(t, err)
			defer c.Close()
			_, err = io.WriteString(c, tc.sent)
			require.NoError(t, err)
			got := readUntilClosed(t, c, tc.within)
			if tc.wantStatus != "" {
				assert.True(t, strings.HasPrefix(got, tc.wantStatus), "answer: %q", got)
			}
			srv.healthy(t)
		})
	}

	t.Run("drip-fed-headers", func(t *testing.T) {
		// One byte at a time, each well inside any per-read timeout: only
		// a deadline on the whole header stops it.
		c, err := net.Dial("tcp", srv.addr)
		require.NoError(t, err)
		defer c.Close()
		closed := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			line := "GET /api/sessions HTTP/1.1\r\nX-Pad: " + strings.Repeat("a", 1<<20)
			for i := 0; i < len(line); i++ {
				select {
				case <-closed:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{line[i]}); err != nil {
					return
				}
			}
		}()
		readUntilClosed(t, c, hostileReadHeader+5*time.Second)
		close(closed)
		wg.Wait()
		srv.healthy(t)
	})
}

// TestHostileStreamOutlivesReadTimeout guards the stream against the
// server's ReadTimeout, which bounds reading a request: a stream that has
// read its request must keep going past it (EventSource would otherwise
// reconnect every ReadTimeout).
func TestHostileStreamOutlivesReadTimeout(t *testing.T) {
	srv := startHostile(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	info, err := srv.sessions.Create()
	require.NoError(t, err)
	c, err := net.Dial("tcp", srv.addr)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetDeadline(time.Now().Add(20*time.Second)))
	_, err = io.WriteString(c, "GET /api/sessions/"+info.ID+"/stream HTTP/1.1\r\nHost: breakglass.test\r\nX-Authentik-Username: alice\r\n\r\n")
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	// Closing the body would drain the endless stream: c.Close ends it.
	require.Equal(t, http.StatusOK, resp.StatusCode)
	rd := &sseReader{br: bufio.NewReader(resp.Body)}

	// Keepalives every 50 ms: count enough of them to cover three read
	// timeouts, then check a live event still arrives.
	deadline := time.Now().Add(3 * hostileReadTimeout)
	for time.Now().Before(deadline) {
		_, err := rd.br.ReadString('\n')
		require.NoError(t, err, "the stream ended %v before the deadline", time.Until(deadline))
	}
	require.NoError(t, srv.sessions.Append(info.ID, event.New(event.Text, event.TextData{Delta: "still here"})))
	ev, err := rd.next()
	require.NoError(t, err)
	assert.Equal(t, string(event.Text), ev.typ)
	assert.Contains(t, ev.data, "still here")
}
