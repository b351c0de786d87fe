package edgetest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/uuid"
)

// identity is the web's identity header, as a client would forge it.
const identity = "x-authentik-username"

// edge is the whole chain: the auth double, nginx, a web that trusts the
// header from loopback (where nginx is) behind forward auth, and a web in
// its default configuration behind the plain proxies.
type edge struct {
	proxy         *proxy
	trusting, def *web
	token         string
}

func startEdge(t *testing.T) *edge {
	t.Helper()
	const token = "edge-test-bearer-token-0123456789"
	auth := authDouble(t)
	trusting := startWeb(t, "127.0.0.1/32", token)
	def := startWeb(t, "", token)
	return &edge{proxy: startNginx(t, auth, trusting, def), trusting: trusting, def: def, token: token}
}

// signedIn is a browser with an authentik session for name.
func signedIn(name string) http.Header {
	return http.Header{"Cookie": {"authentik_session=" + name}}
}

// with returns h plus the extra header values.
func with(h http.Header, kv ...string) http.Header {
	h = h.Clone()
	if h == nil {
		h = http.Header{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

// createSession makes a session through addr and returns its id.
func createSession(t *testing.T, addr string, h http.Header) string {
	t.Helper()
	status, body, _ := request(t, http.MethodPost, addr, "/api/sessions", with(h, "Sec-Fetch-Site", "same-origin"), "{}")
	require.Equal(t, http.StatusCreated, status, body)
	var s struct {
		ID string `json:"id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &s))
	require.NotEmpty(t, s.ID)
	return s.ID
}

// promptActor sends a prompt through addr and returns the actor the web
// recorded on it (the `user` event), read from the session's stream through the same proxy.
func promptActor(t *testing.T, addr, session string, h http.Header) string {
	t.Helper()
	lines := stream(t, addr, session, h)
	attached(t, lines)
	status, body, _ := request(t, http.MethodPost, addr, "/api/sessions/"+session+"/prompt", with(h, "Sec-Fetch-Site", "same-origin"), `{"text":"who am I?"}`)
	require.Equal(t, http.StatusAccepted, status, body)
	deadline := time.After(30 * time.Second)
	event := ""
	for {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the stream ended before the user event")
			switch {
			case strings.HasPrefix(line, "event: "):
				event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: ") && event == "user":
				var p struct {
					Text  string `json:"text"`
					Actor string `json:"actor"`
				}
				require.NoError(t, json.Unmarshal([]byte(strings.TrimPrefix(line, "data: ")), &p))
				require.Equal(t, "who am I?", p.Text)
				return p.Actor
			}
		case <-deadline:
			t.Fatal("no user event through the proxy in 30s")
		}
	}
}

// TestEdgeForwardAuthOverwritesClientIdentity: behind nginx configured the
// way ingress-nginx renders deploy/k8s/components/authentik, a client's own
// x-authentik-username never reaches the web as the operator: without an
// authentik session it is sent to sign in and the web sees nothing; with
// one, the web sees the auth answer's name, whatever the client sent; an
// answer without a name leaves the web no header at all.
func TestEdgeForwardAuthOverwritesClientIdentity(t *testing.T) {
	e := startEdge(t)
	fa := e.proxy.forwardAuth

	t.Run("no-session-forged-header", func(t *testing.T) {
		status, _, h := request(t, http.MethodGet, fa, "/api/sessions", with(nil, identity, "alice"), "")
		assert.Equal(t, http.StatusFound, status)
		assert.Contains(t, h.Get("Location"), "/outpost.goauthentik.io/start?rd=")
		status, _, _ = request(t, http.MethodPost, fa, "/api/sessions", with(nil, identity, "alice", "Sec-Fetch-Site", "same-origin"), "{}")
		assert.Equal(t, http.StatusFound, status, "a state change never reaches the web either")
	})

	t.Run("session-without-name", func(t *testing.T) {
		status, body, _ := request(t, http.MethodGet, fa, "/api/sessions", with(signedIn("nameless"), identity, "alice"), "")
		assert.Equal(t, http.StatusUnauthorized, status, "the client's header was dropped, not passed on: %s", body)
	})

	t.Run("forged-header-replaced-by-auth-answer", func(t *testing.T) {
		for name, forged := range map[string][]string{
			"one":           {identity, "mallory"},
			"two":           {identity, "mallory", identity, "eve"},
			"other-case":    {"X-AUTHENTIK-USERNAME", "mallory"},
			"underscore":    {"x_authentik_username", "mallory"},
			"none-at-all":   {},
			"same-as-login": {identity, "bob"},
		} {
			t.Run(name, func(t *testing.T) {
				h := with(signedIn("bob"), forged...)
				id := createSession(t, fa, h)
				assert.Equal(t, "bob", promptActor(t, fa, id, h), "the actor is the auth answer's name")
			})
		}
	})

	t.Run("direct-to-web-from-loopback-is-the-proxy's-range", func(t *testing.T) {
		// Guard for the test itself: the trusting web does believe the
		// header from loopback, so the cases above prove nginx replaced it.
		status, body, _ := request(t, http.MethodGet, e.trusting.addr, "/api/sessions", with(nil, identity, "mallory"), "")
		require.Equal(t, http.StatusOK, status, body)
	})
}

// TestEdgePassThroughProxyDefaultRefusesForgedHeader: a web in its default
// configuration (BREAKGLASS_TRUSTED_PROXIES empty) behind a proxy that passes
// client headers through answers 401 to a forged x-authentik-username; the
// bearer token through the same proxy works.
func TestEdgePassThroughProxyDefaultRefusesForgedHeader(t *testing.T) {
	e := startEdge(t)
	pt := e.proxy.passThrough
	for _, path := range []string{"/api/sessions", "/api/vm", "/api/sessions/" + uuid.New()} {
		status, body, _ := request(t, http.MethodGet, pt, path, with(nil, identity, "alice"), "")
		assert.Equal(t, http.StatusUnauthorized, status, "%s: %s", path, body)
	}
	// The page itself is static code with no data, served before sign-in
	// so the passkey sign-in works with the SSO down; a forged header gets
	// it no further than anyone else.
	status, body, _ := request(t, http.MethodGet, pt, "/", with(nil, identity, "alice"), "")
	assert.Equal(t, http.StatusOK, status, body)
	assert.NotContains(t, body, "alice", "the page carries nothing of the forged identity")
	status, body, _ = request(t, http.MethodPost, pt, "/api/sessions", with(nil, identity, "alice", "Sec-Fetch-Site", "same-origin"), "{}")
	assert.Equal(t, http.StatusUnauthorized, status, body)

	bearer := with(nil, "Authorization", "Bearer "+e.token)
	status, body, _ = request(t, http.MethodGet, pt, "/api/sessions", bearer, "")
	assert.Equal(t, http.StatusOK, status, body)
	assert.Equal(t, "[]", strings.TrimSpace(body), "the forged requests created nothing")
}

// keepalives counts `: keepalive` lines from lines until n arrived (true)
// or wait passed (false).
func keepalives(lines <-chan string, n int, wait time.Duration) bool {
	deadline := time.After(wait)
	for n > 0 {
		select {
		case line, ok := <-lines:
			if !ok {
				return false
			}
			if line == ": keepalive" {
				n--
			}
		case <-deadline:
			return false
		}
	}
	return true
}

// TestEdgeStreamLivesThroughTheProxy: the session stream (keepalive every
// second) through nginx with its default proxy buffering, compressing
// text/event-stream as a proxy may, delivers events and keepalives as they
// are written, because the web sends X-Accel-Buffering: no (nginx then
// passes each write on and flushes its gzip stream). The control server
// ignores that header, so it buffers: there nothing of the stream comes,
// which shows the check bites.
func TestEdgeStreamLivesThroughTheProxy(t *testing.T) {
	e := startEdge(t)

	t.Run("forward-auth", func(t *testing.T) {
		h := signedIn("carol")
		id := createSession(t, e.proxy.forwardAuth, h)
		assert.Equal(t, "carol", promptActor(t, e.proxy.forwardAuth, id, h), "a live event through the proxy")
		lines := stream(t, e.proxy.forwardAuth, id, h)
		attached(t, lines)
		assert.True(t, keepalives(lines, 3, 30*time.Second), "three keepalives through the proxy")
	})

	t.Run("pass-through-bearer", func(t *testing.T) {
		h := with(nil, "Authorization", "Bearer "+e.token)
		id := createSession(t, e.proxy.passThrough, h)
		lines := stream(t, e.proxy.passThrough, id, h)
		attached(t, lines)
		assert.True(t, keepalives(lines, 3, 30*time.Second), "three keepalives through the proxy")
	})

	t.Run("control-buffered", func(t *testing.T) {
		h := with(nil, "Authorization", "Bearer "+e.token)
		id := createSession(t, e.proxy.buffered, h)
		lines := stream(t, e.proxy.buffered, id, h)
		// Four keepalive periods: a buffering proxy holds them back (and
		// the response's head with them).
		assert.False(t, keepalives(lines, 1, 4*time.Second), "the control proxy buffers: no keepalive may come through it")
	})
}
