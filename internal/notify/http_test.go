package notify_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/notify"
)

func serve(t *testing.T, n *notify.Notifier) *httptest.Server {
	t.Helper()
	r := mux.NewRouter()
	for _, rt := range n.Routes() {
		r.HandleFunc(rt.Path, func(w http.ResponseWriter, req *http.Request) {
			rt.Operator(w, req, wire.Principal{Name: "alice"})
		}).Methods(rt.Method)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return srv
}

func call(t *testing.T, srv *httptest.Server, method, path, body string, hdr ...string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var out map[string]any
	if len(raw) > 0 {
		require.NoError(t, json.Unmarshal(raw, &out), "%s", raw)
	}
	return resp.StatusCode, out
}

func TestPushRoutesRoundTrip(t *testing.T) {
	r := newRig(t, nil)
	require.NoError(t, r.n.Unsubscribe(r.sub.Endpoint))
	srv := serve(t, r.n)

	code, body := call(t, srv, "GET", "/api/push/key", "")
	assert.Equal(t, 200, code)
	assert.Equal(t, r.n.PublicKey(), body["public_key"])
	assert.Equal(t, []any{"approval", "permission", "turn", "vm"}, body["kinds"])

	code, body = call(t, srv, "POST", "/api/push/test", "")
	assert.Equal(t, 409, code)
	assert.Equal(t, "nothing_to_send", body["code"])

	sub, err := json.Marshal(map[string]any{"endpoint": r.sub.Endpoint, "expirationTime": nil, "keys": r.sub.Keys, "events": []string{"approval", "vm"}})
	require.NoError(t, err)
	code, body = call(t, srv, "POST", "/api/push/subscriptions", string(sub))
	require.Equal(t, 201, code, body)
	assert.Equal(t, []any{"approval", "vm"}, body["events"])
	assert.NotContains(t, body, "keys")

	code, body = call(t, srv, "POST", "/api/push/test", "")
	assert.Equal(t, 202, code)
	assert.Equal(t, 1.0, body["queued"])
	_, msg := r.received(t)
	assert.Equal(t, notify.Test(), msg)
	r.next(t)

	code, body = call(t, srv, "GET", "/api/push/subscriptions", "")
	assert.Equal(t, 200, code)
	subs := body["subscriptions"].([]any)
	require.Len(t, subs, 1)
	s := subs[0].(map[string]any)
	assert.Equal(t, r.sub.Endpoint, s["endpoint"])
	assert.NotContains(t, s, "keys", "keys are never shown")
	last := s["last_delivery"].(map[string]any)
	assert.Equal(t, "ok", last["status"])
	assert.Equal(t, 201.0, last["code"])
	assert.NotEmpty(t, last["at"])
	assert.Nil(t, body["ntfy"])

	del, _ := json.Marshal(map[string]string{"endpoint": r.sub.Endpoint})
	code, _ = call(t, srv, "DELETE", "/api/push/subscriptions", string(del))
	assert.Equal(t, 204, code)
	code, body = call(t, srv, "DELETE", "/api/push/subscriptions", string(del))
	assert.Equal(t, 404, code)
	assert.Equal(t, "not_found", body["code"])
}

func TestPushRoutesRefuseBadInput(t *testing.T) {
	r := newRig(t, nil)
	srv := serve(t, r.n)
	keys := `"keys":{"p256dh":"` + r.sub.Keys.P256dh + `","auth":"` + r.sub.Keys.Auth + `"}`
	tests := []struct {
		name, method, path, body string
		hdr                      []string
		status                   int
		code                     string
	}{
		{"http-endpoint", "POST", "/api/push/subscriptions", `{"endpoint":"http://push.example.com/x",` + keys + `}`, nil, 400, "bad_endpoint"},
		{"ip-endpoint", "POST", "/api/push/subscriptions", `{"endpoint":"https://10.0.0.1/x",` + keys + `}`, nil, 400, "bad_endpoint"},
		{"private-name", "POST", "/api/push/subscriptions", `{"endpoint":"https://metadata.google.internal/x",` + keys + `}`, nil, 400, "bad_endpoint"},
		{"bad-keys", "POST", "/api/push/subscriptions", `{"endpoint":"https://push.example.com/x","keys":{"p256dh":"AAAA","auth":"AAAA"}}`, nil, 400, "bad_keys"},
		{"no-keys", "POST", "/api/push/subscriptions", `{"endpoint":"https://push.example.com/x"}`, nil, 400, "bad_keys"},
		{"unknown-kind", "POST", "/api/push/subscriptions", `{"endpoint":"https://push.example.com/x",` + keys + `,"events":["all"]}`, nil, 400, "bad_request"},
		{"unknown-field", "POST", "/api/push/subscriptions", `{"endpoint":"https://push.example.com/x",` + keys + `,"x":1}`, nil, 400, "bad_request"},
		{"malformed", "POST", "/api/push/subscriptions", `{"endpoint":`, nil, 400, "bad_request"},
		{"trailing", "POST", "/api/push/subscriptions", `{}{}`, nil, 400, "bad_request"},
		{"empty", "POST", "/api/push/subscriptions", ``, nil, 400, "bad_request"},
		{"oversize", "POST", "/api/push/subscriptions", `{"endpoint":"` + strings.Repeat("a", 9000) + `"}`, nil, 413, "body_too_large"},
		{"delete-empty", "DELETE", "/api/push/subscriptions", ``, nil, 400, "bad_request"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := call(t, srv, tc.method, tc.path, tc.body, tc.hdr...)
			assert.Equal(t, tc.status, code)
			assert.Equal(t, tc.code, body["code"])
			assert.NotEmpty(t, body["error"])
		})
	}
	assert.Len(t, r.n.Status().Subscriptions, 1, "nothing was added")
}
