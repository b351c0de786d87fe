package api

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"breakglass/internal/power"
	"breakglass/internal/session"
	"breakglass/internal/uuid"
)

// FuzzCursor feeds arbitrary Last-Event-ID headers and ?last_event_id=
// values: the cursor is either refused or a non-negative id that is
// exactly what the client sent, in decimal digits.
func FuzzCursor(f *testing.F) {
	for _, s := range []string{"", "0", "7", "007", "9223372036854775807", "9223372036854775808", "99999999999999999999",
		"-1", "+1", "0x10", "1e3", "1 2", " 5", "abc", "\xff\xfe", strings.Repeat("9", 64)} {
		f.Add(s, "")
		f.Add("", s)
	}
	f.Fuzz(func(t *testing.T, header, query string) {
		r := &http.Request{Header: http.Header{}, URL: &url.URL{RawQuery: url.Values{"last_event_id": {query}}.Encode()}}
		if header != "" {
			r.Header.Set("Last-Event-ID", header)
		}
		n, err := cursor(r)
		if err != nil {
			require.ErrorIs(t, err, errBadLastEventID)
			return
		}
		v := header
		if v == "" {
			v = query
		}
		if v == "" {
			require.Zero(t, n)
			return
		}
		require.GreaterOrEqual(t, n, int64(0))
		require.True(t, strings.Trim(v, "0123456789") == "", "accepted %q", v)
		got, perr := strconv.ParseInt(v, 10, 64)
		require.NoError(t, perr)
		require.Equal(t, got, n)
	})
}

// fuzzRoutes is the operator's handler with the verb routes, for fuzzing
// without sockets.
func fuzzRoutes(f *testing.F) (http.Handler, *session.Manager, string) {
	f.Helper()
	reg := prometheus.NewPedanticRegistry()
	m, err := session.New(session.Config{Dir: f.TempDir(), Runner: &fakeRunner{script: quickTurn}, Registerer: reg, MaxConcurrentTurns: 2})
	require.NoError(f, err)
	f.Cleanup(func() { require.NoError(f, m.Close()) })
	svc, err := power.New(power.Config{Keyholder: fakeVerbKeyholder{}, Transcript: m, Registerer: reg})
	require.NoError(f, err)
	s, err := New(Config{
		Sessions:       m,
		Keyholder:      &fakeKeyholder{},
		TrustedProxies: mustPrefixes("127.0.0.0/8"),
		Routes:         slices.Concat(svc.Routes(), svc.AgentRoutes()),
		Registerer:     reg,
		Gatherer:       reg,
	})
	require.NoError(f, err)
	info, err := m.Create()
	require.NoError(f, err)
	return s.Handler(), m, info.ID
}

// serveFuzz runs one request through h as the operator and returns the
// status.
func serveFuzz(h http.Handler, method, target string, body []byte) int {
	r := httptest.NewRequest(method, "http://breakglass.test/", bytes.NewReader(body))
	r.URL = &url.URL{Path: target}
	r.RequestURI = target
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set(IdentityHeader, "alice")
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code
}

// FuzzRouteBodies feeds arbitrary JSON bodies to every route of the web that
// takes one: each answers one of its documented statuses, never a 5xx.
func FuzzRouteBodies(f *testing.F) {
	h, m, id := fuzzRoutes(f)
	routes := []struct {
		path string
		ok   []int
	}{
		{"/api/sessions", []int{201, 400, 413}},
		{"/api/sessions/{id}/prompt", []int{202, 400, 409, 413, 429}},
		{"/api/sessions/{id}/cancel", []int{202, 409}},
		{"/api/vm/status", []int{200, 400}},
		{"/api/sessions/{id}/approvals/a1", []int{400, 404}},
	}
	seeds := []string{"", "{}", `{"text":"hi"}`, `{"text":""}`, `null`, `[]`, `{"text":"hi"}{}`, `{"text":1}`,
		`{"session_id":"{id}"}`, `{"session_id":"../x"}`, `{"approve":true}`, `{"approve":"yes"}`, "\xff\xfe", `{"text":"\ud800"}`,
		`{"text":` + strings.Repeat("[", 100), `{"x":1}`}
	for i := range routes {
		for _, s := range seeds {
			f.Add(uint8(i), []byte(s))
		}
	}
	f.Fuzz(func(t *testing.T, route uint8, body []byte) {
		rt := routes[int(route)%len(routes)]
		body = bytes.ReplaceAll(body, []byte("{id}"), []byte(id))
		code := serveFuzz(h, http.MethodPost, strings.ReplaceAll(rt.path, "{id}", id), body)
		require.Contains(t, rt.ok, code, "POST %s %q", rt.path, body)
		if code == http.StatusAccepted && strings.HasSuffix(rt.path, "/prompt") {
			// Let the next input find the session idle again, most of
			// the time: a 409 is a documented answer too.
			_ = m.Cancel(id)
		}
	})
}

// FuzzSessionPath feeds arbitrary session ids (and what follows them) to
// the session routes: only a canonical UUID v4 of an existing session is
// ever found; anything else is 404 (or 400 for a bad cursor), never a 5xx.
func FuzzSessionPath(f *testing.F) {
	h, _, id := fuzzRoutes(f)
	for _, s := range []string{id, strings.ToUpper(id), "../" + id, id + "/", "%2e%2e", "..", ".", "", "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
		id + "%2Fstream", id + "/../x", "\x00", strings.Repeat("a", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		code := serveFuzz(h, http.MethodGet, "/api/sessions/"+s, nil)
		switch {
		case s == id:
			require.Equal(t, http.StatusOK, code)
		case code == http.StatusOK:
			// Only the page's own files answer 200 for other paths, and
			// none lives under /api/.
			t.Fatalf("GET /api/sessions/%q answered 200", s)
		default:
			require.Contains(t, []int{http.StatusNotFound, http.StatusMethodNotAllowed}, code, "GET /api/sessions/%q", s)
		}
		if uuid.Valid(s) {
			require.Len(t, s, 36)
			require.Equal(t, strings.ToLower(s), s)
			require.False(t, strings.ContainsAny(s, "/\\.%"))
		}
	})
}
