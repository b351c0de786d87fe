package api

import (
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestAuthMatrix(t *testing.T) {
	loopback := opts{api: Config{BearerToken: "s3cret-token", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}}
	foreign := opts{api: Config{BearerToken: "s3cret-token", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.99.0.0/16")}}}
	noToken := opts{api: Config{}}
	// headerOff is the default configuration: no trusted proxy at all
	// (start fills only a nil list with loopback).
	headerOff := opts{api: Config{BearerToken: "s3cret-token", TrustedProxies: []netip.Prefix{}}}

	tests := []struct {
		name    string
		o       opts
		method  string
		path    string
		headers map[string][]string
		want    int
		reason  string
	}{
		{name: "no-credentials", o: loopback, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil}, want: 401, reason: reasonMissing},
		{name: "no-credentials-page", o: loopback, method: "GET", path: "/", headers: map[string][]string{IdentityHeader: nil}, want: 401, reason: reasonMissing},
		{name: "header-trusted", o: loopback, method: "GET", path: "/api/sessions", want: 200},
		{name: "header-page", o: loopback, method: "GET", path: "/", want: 200},
		{name: "header-untrusted-peer", o: foreign, method: "GET", path: "/api/sessions", want: 401, reason: reasonUntrustedPeer},
		{name: "header-trusted-without-bearer", o: noToken, method: "GET", path: "/api/sessions", want: 200},
		{name: "header-refused-when-no-proxy-trusted", o: headerOff, method: "GET", path: "/api/sessions", want: 401, reason: reasonHeaderOff},
		{name: "header-page-refused-when-no-proxy-trusted", o: headerOff, method: "GET", path: "/", want: 401, reason: reasonHeaderOff},
		{name: "header-post-refused-when-no-proxy-trusted", o: headerOff, method: "POST", path: "/api/sessions", headers: map[string][]string{"Sec-Fetch-Site": {"same-origin"}}, want: 401, reason: reasonHeaderOff},
		{name: "bearer-right-when-no-proxy-trusted", o: headerOff, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer s3cret-token"}}, want: 200},
		{name: "header-empty", o: loopback, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: {""}}, want: 401, reason: reasonEmpty},
		{name: "header-blank", o: loopback, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: {"  "}}, want: 401, reason: reasonEmpty},
		{name: "header-repeated", o: loopback, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: {"alice", "root"}}, want: 401, reason: reasonRepeated},
		{name: "header-too-long", o: loopback, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: {strings.Repeat("a", maxIdentity+1)}}, want: 401, reason: reasonInvalid},
		{name: "bearer-right", o: foreign, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer s3cret-token"}}, want: 200},
		{name: "bearer-wrong", o: foreign, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer s3cret-tokeX"}}, want: 401, reason: reasonBadToken},
		{name: "bearer-prefix", o: foreign, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer s3cret"}}, want: 401, reason: reasonBadToken},
		{name: "bearer-wrong-beats-header", o: loopback, method: "GET", path: "/api/sessions", headers: map[string][]string{"Authorization": {"Bearer nope"}}, want: 401, reason: reasonBadToken},
		{name: "bearer-unset-empty", o: noToken, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer "}}, want: 401, reason: reasonNoToken},
		{name: "bearer-unset-any", o: noToken, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer anything"}}, want: 401, reason: reasonNoToken},
		{name: "bearer-repeated", o: foreign, method: "GET", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer s3cret-token", "Bearer s3cret-token"}}, want: 401, reason: reasonRepeated},
		{name: "post-same-origin", o: loopback, method: "POST", path: "/api/sessions", headers: map[string][]string{"Sec-Fetch-Site": {"same-origin"}}, want: 201},
		{name: "post-no-browser-headers", o: loopback, method: "POST", path: "/api/sessions", want: 201},
		{name: "post-cross-site", o: loopback, method: "POST", path: "/api/sessions", headers: map[string][]string{"Sec-Fetch-Site": {"cross-site"}}, want: 403, reason: reasonCrossOrigin},
		{name: "post-same-site", o: loopback, method: "POST", path: "/api/sessions", headers: map[string][]string{"Sec-Fetch-Site": {"same-site"}}, want: 403, reason: reasonCrossOrigin},
		{name: "post-foreign-origin", o: loopback, method: "POST", path: "/api/sessions", headers: map[string][]string{"Origin": {"https://evil.example"}}, want: 403, reason: reasonCrossOrigin},
		{name: "post-bearer-cross-site", o: foreign, method: "POST", path: "/api/sessions", headers: map[string][]string{IdentityHeader: nil, "Authorization": {"Bearer s3cret-token"}, "Sec-Fetch-Site": {"cross-site"}}, want: 201},
		{name: "healthz-open", o: foreign, method: "GET", path: "/healthz", headers: map[string][]string{IdentityHeader: nil}, want: 200},
		{name: "readyz-open", o: foreign, method: "GET", path: "/readyz", headers: map[string][]string{IdentityHeader: nil}, want: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := start(t, tt.o)
			resp, body := e.req(t, tt.method, tt.path, "", tt.headers)
			assert.Equal(t, tt.want, resp.StatusCode, body)
			if tt.want == 401 {
				if strings.HasPrefix(tt.path, "/api/") {
					assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
					assert.JSONEq(t, `{"error":"not authenticated","code":"unauthorized"}`, body)
				} else {
					assert.Contains(t, resp.Header.Get("Content-Type"), "text/plain")
				}
			}
			if tt.reason != "" {
				assert.Equal(t, 1.0, testutil.ToFloat64(e.srv.authFailures.WithLabelValues(tt.reason)))
			}
			if tt.want >= 400 {
				assert.Empty(t, e.sessions.List(), "a refused request created nothing")
			}
		})
	}
}

func TestIdentityIsTheActor(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	resp, body := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"hello"}`, map[string][]string{IdentityHeader: {"bob"}})
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	sub, err := e.sessions.Attach(id, 0)
	require.NoError(t, err)
	defer sub.Close()
	require.NotEmpty(t, slices.Collect(sub.Replay()))
	assert.JSONEq(t, `{"text":"hello","actor":"bob"}`, string(slices.Collect(sub.Replay())[0].Data))
}
