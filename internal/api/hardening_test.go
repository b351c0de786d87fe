package api

// One test per security property of the web's HTTP surface, each named for
// the attack it blocks.

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
)

// Attack: reach files outside the sessions folder through the session id
// (`../x`, encoded dots and slashes, ids that are not UUID v4).
func TestHardeningPathTraversalThroughSessionID(t *testing.T) {
	e := start(t, opts{})
	real := e.create(t)
	ids := []string{
		"..", "../x", "%2e%2e", "%2e%2e%2fx", "..%2f..%2fetc", "%2E%2E", ".", "%00",
		"x", real + "x", strings.ToUpper(real),
		"00000000-0000-0000-0000-000000000000", // nil UUID
		"6ba7b810-9dad-11d1-80b4-00c04fd430c8", // v1
		"6ba7b810-9dad-41d1-c0b4-00c04fd430c8", // wrong variant
	}
	for _, id := range ids {
		t.Run(id, func(t *testing.T) {
			for _, rt := range []struct{ method, path, body string }{
				{http.MethodGet, "/api/sessions/" + id, ""},
				{http.MethodGet, "/api/sessions/" + id + "/stream", ""},
				{http.MethodPost, "/api/sessions/" + id + "/prompt", `{"text":"hi"}`},
				{http.MethodPost, "/api/sessions/" + id + "/cancel", ""},
			} {
				resp, body := e.req(t, rt.method, rt.path, rt.body, nil)
				assert.Equal(t, http.StatusNotFound, resp.StatusCode, "%s %s: %s", rt.method, rt.path, body)
			}
		})
	}
	// Nothing appeared beside the sessions folder, nor in it but the real
	// session.
	entries, err := os.ReadDir(e.dir)
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, "sessions", entries[0].Name())
	entries, err = os.ReadDir(filepath.Join(e.dir, "sessions"))
	require.NoError(t, err)
	require.Len(t, entries, 1)
	assert.Equal(t, real, entries[0].Name())
}

// Attack: a cross-site page makes the operator's browser (which carries the
// SSO session, so the proxy adds the identity header) start or cancel a
// turn.
func TestHardeningCrossSiteRequestForgery(t *testing.T) {
	// Room for every turn a broken check would start, so none blocks on
	// it and the test fails rather than hangs.
	started := make(chan string, 16)
	e := start(t, opts{runner: &fakeRunner{script: blockTurn(started)}})
	id := e.create(t)
	for _, h := range []map[string][]string{
		{"Sec-Fetch-Site": {"cross-site"}},
		{"Sec-Fetch-Site": {"same-site"}, "Origin": {"https://sibling.example.com"}},
		{"Origin": {"https://evil.example"}},
	} {
		for _, path := range []string{"/prompt", "/cancel"} {
			resp, body := e.req(t, http.MethodPost, "/api/sessions/"+id+path, `{"text":"rm -rf"}`, h)
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, body)
		}
	}
	info, err := e.sessions.Get(id)
	require.NoError(t, err)
	assert.Equal(t, int64(0), info.LastEventID, "no turn started")
	assert.Empty(t, started, "no turn started")
}

// Attack: change state with a GET (an <img src> or a prefetch): the stream
// and every GET route are read-only, and the state-changing routes refuse
// GET.
func TestHardeningNoStateChangeOnGet(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	for _, path := range []string{"/api/sessions/" + id + "/prompt?text=hi", "/api/sessions/" + id + "/cancel"} {
		resp, _ := e.req(t, http.MethodGet, path, "", nil)
		assert.Contains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, resp.StatusCode, path)
	}
	ctx, cancel := context.WithCancel(withTimeout(t))
	resp, _ := e.attach(t, ctx, id, -1)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	cancel()
	assert.Len(t, e.sessions.List(), 1)
	info, err := e.sessions.Get(id)
	require.NoError(t, err)
	assert.Equal(t, int64(0), info.LastEventID)
}

// Attack: forge the identity header from inside the network, bypassing the
// SSO proxy (a peer outside BREAKGLASS_TRUSTED_PROXIES), or smuggle a second
// identity next to the proxy's.
func TestHardeningForgedIdentityHeader(t *testing.T) {
	e := start(t, opts{api: Config{TrustedProxies: mustPrefixes("192.0.2.0/24")}})
	resp, _ := e.req(t, http.MethodGet, "/api/sessions", "", map[string][]string{IdentityHeader: {"admin"}})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	e2 := start(t, opts{})
	resp, _ = e2.req(t, http.MethodGet, "/api/sessions", "", map[string][]string{IdentityHeader: {"alice", "admin"}})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
}

// Attack: guess the bearer token when none is configured (an empty token
// must never match an empty or missing one).
func TestHardeningBearerWithoutConfiguredToken(t *testing.T) {
	e := start(t, opts{})
	for _, v := range []string{"Bearer", "Bearer ", "Bearer  ", "bearer x", "Bearer null"} {
		resp, _ := e.req(t, http.MethodGet, "/api/sessions", "", map[string][]string{IdentityHeader: nil, "Authorization": {v}})
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, v)
	}
}

// Attack: exhaust memory with a huge body.
func TestHardeningOversizedBodies(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	huge := `{"text":"` + strings.Repeat("a", 4<<20) + `"}`
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", huge, nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
	resp, _ = e.req(t, http.MethodPost, "/api/sessions", `{"pad":"`+strings.Repeat("a", 1<<20)+`"}`, nil)
	assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
}

// Attack: inject SSE fields (a fake `event: done` or `id:`) through text
// the model or a tool prints: data always goes out as one JSON line.
func TestHardeningSSEInjection(t *testing.T) {
	evil := "x\n\nid: 999\nevent: done\ndata: {}\n\n"
	e := start(t, opts{runner: &fakeRunner{script: func(_ context.Context, _ claude.Turn, emit func(event.Event)) claude.Outcome {
		emit(event.New(event.Text, event.TextData{Delta: evil}))
		emit(event.Event{Type: event.Text, Data: []byte("{\"delta\":\n\"pretty\"}")})
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}}})
	id := e.create(t)
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"`+strings.ReplaceAll(evil, "\n", `\n`)+`"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	_, rd := e.attach(t, withTimeout(t), id, -1)
	got := readUntilDone(t, rd)
	require.Len(t, got, 4)
	assert.Equal(t, []int64{1, 2, 3, 4}, []int64{got[0].id, got[1].id, got[2].id, got[3].id})
	assert.Equal(t, `{"delta":"pretty"}`, got[2].data)
}

func mustPrefixes(s ...string) []netipPrefix {
	out := make([]netipPrefix, len(s))
	for i, p := range s {
		out[i] = mustPrefix(p)
	}
	return out
}

// Attack: a client that attaches and stops reading (or a proxy that
// buffers) stalls the turn, and every other client with it.
func TestHardeningStalledClientNeverBlocksTheTurn(t *testing.T) {
	const n = 4000
	chunk := strings.Repeat("x", 4096)
	e := start(t, opts{runner: &fakeRunner{script: func(_ context.Context, _ claude.Turn, emit func(event.Event)) claude.Outcome {
		for i := 0; i < n; i++ {
			emit(event.New(event.Text, event.TextData{Delta: chunk}))
		}
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}}, api: Config{WriteTimeout: 200 * time.Millisecond}})
	id := e.create(t)
	ctx, cancel := context.WithCancel(withTimeout(t))
	defer cancel()
	stalled, _ := e.attach(t, ctx, id, -1) // never read
	require.Equal(t, http.StatusOK, stalled.StatusCode)
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"go"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	// The 16 MiB turn finishes although one client reads nothing; a
	// reading client that falls behind is dropped and resumes by id, as
	// EventSource does.
	var got []sseEvent
	last := int64(0)
	for len(got) == 0 || got[len(got)-1].typ != "done" {
		_, rd := e.attach(t, withTimeout(t), id, last)
		for {
			ev, err := rd.next()
			if err != nil {
				break
			}
			got = append(got, ev)
			last = ev.id
			if ev.typ == "done" {
				break
			}
		}
	}
	require.Len(t, got, n+2)
	for i, ev := range got {
		require.Equal(t, int64(i+1), ev.id)
	}
	assert.Contains(t, got[len(got)-1].data, `"outcome":"success"`)
}

// TestHardeningAgentCannotPoseAsTheOperator: the agent's Bash tool runs on
// this host. Were the header believed from "any peer", it could `curl` the
// web with x-authentik-username set, approve its own reset, and act as the
// operator. With no trusted proxies the header is off for every peer; with
// some, a peer on this host is still refused: loopback unless explicitly
// trusted, and the pod's own address always, even inside a trusted CIDR.
func TestHardeningAgentCannotPoseAsTheOperator(t *testing.T) {
	cases := []struct {
		name    string
		trusted []netipPrefix
		peer    string
		local   string
		want    string
	}{
		{name: "loopback-none-trusted", peer: "127.0.0.1:40000", local: "127.0.0.1:8080", want: reasonHeaderOff},
		{name: "other-loopback-none-trusted", peer: "127.0.0.2:40000", local: "127.0.0.1:8080", want: reasonHeaderOff},
		{name: "ipv6-loopback-none-trusted", peer: "[::1]:40000", local: "[::1]:8080", want: reasonHeaderOff},
		{name: "own-pod-ip-none-trusted", peer: "10.42.0.7:40000", local: "10.42.0.7:8080", want: reasonHeaderOff},
		{name: "own-pod-ip-in-trusted-cidr", trusted: mustPrefixes("10.42.0.0/16"), peer: "10.42.0.7:40000", local: "10.42.0.7:8080", want: reasonLocalPeer},
		{name: "own-ipv6-pod-ip-in-trusted-cidr", trusted: mustPrefixes("fd00:42::/64"), peer: "[fd00:42::7]:40000", local: "[fd00:42::7]:8080", want: reasonLocalPeer},
		{name: "loopback-not-listed", trusted: mustPrefixes("10.42.0.0/16"), peer: "127.0.0.1:40000", local: "127.0.0.1:8080", want: reasonUntrustedPeer},
		{name: "edge-in-trusted-cidr", trusted: mustPrefixes("10.42.0.0/16"), peer: "10.42.3.9:40000", local: "10.42.0.7:8080", want: ""},
		{name: "edge-outside-trusted-cidr", trusted: mustPrefixes("10.42.0.0/16"), peer: "10.43.3.9:40000", local: "10.42.0.7:8080", want: reasonUntrustedPeer},
		{name: "edge-none-trusted", peer: "10.42.3.9:40000", local: "10.42.0.7:8080", want: reasonHeaderOff},
		{name: "loopback-listed-explicitly", trusted: mustPrefixes("127.0.0.1/32"), peer: "127.0.0.1:40000", local: "127.0.0.1:8080", want: ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := authenticator{trusted: tc.trusted}
			r := httptest.NewRequest(http.MethodPost, "/api/vm/reset", nil)
			r.RemoteAddr = tc.peer
			local, err := net.ResolveTCPAddr("tcp", tc.local)
			require.NoError(t, err)
			r = r.WithContext(context.WithValue(r.Context(), http.LocalAddrContextKey, local))
			r.Header.Set(IdentityHeader, "operator")
			p, reason := a.authenticate(r)
			assert.Equal(t, tc.want, reason)
			if tc.want == "" {
				assert.Equal(t, "operator", p.Name)
			} else {
				assert.Empty(t, p.Name)
			}
		})
	}
}
