package api

import (
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/session"
)

func TestSessionRoutes(t *testing.T) {
	e := start(t, opts{})
	resp, body := e.req(t, http.MethodPost, "/api/sessions", "", nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	assert.Contains(t, body, `"state":"idle"`)
	resp, _ = e.req(t, http.MethodPost, "/api/sessions", "{}", nil)
	require.Equal(t, http.StatusCreated, resp.StatusCode)

	resp, body = e.req(t, http.MethodGet, "/api/sessions", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	list := e.sessions.List()
	require.Len(t, list, 2)
	assert.True(t, strings.Index(body, list[0].ID) < strings.Index(body, list[1].ID), "newest first")
	for _, k := range []string{`"id"`, `"created_at"`, `"title"`, `"state"`, `"last_event_id"`} {
		assert.Contains(t, body, k)
	}

	resp, body = e.req(t, http.MethodGet, "/api/sessions/"+list[0].ID, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, list[0].ID)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
}

func TestPromptAndCancelStatuses(t *testing.T) {
	started := make(chan string, 4)
	e := start(t, opts{runner: &fakeRunner{script: blockTurn(started)}, maxTurns: 1})
	a, b := e.create(t), e.create(t)
	big := `{"text":"` + strings.Repeat("x", session.MaxPromptBytes+1) + `"}`
	tests := []struct {
		name string
		path string
		body string
		want int
	}{
		{"empty-text", "/api/sessions/" + a + "/prompt", `{"text":""}`, 400},
		{"blank-text", "/api/sessions/" + a + "/prompt", `{"text":"  \n"}`, 400},
		{"no-body", "/api/sessions/" + a + "/prompt", ``, 400},
		{"malformed", "/api/sessions/" + a + "/prompt", `{"text":`, 400},
		{"not-object", "/api/sessions/" + a + "/prompt", `["hi"]`, 400},
		{"unknown-field", "/api/sessions/" + a + "/prompt", `{"text":"hi","model":"opus"}`, 400},
		{"trailing", "/api/sessions/" + a + "/prompt", `{"text":"hi"}{}`, 400},
		{"text-over-64k", "/api/sessions/" + a + "/prompt", big, 413},
		{"body-over-limit", "/api/sessions/" + a + "/prompt", `{"text":"` + strings.Repeat("x", maxPromptBody) + `"}`, 413},
		{"unknown-session", "/api/sessions/" + "0b7e5c1e-4f7a-4c39-9d9e-3d6f1b2a4c5d" + "/prompt", `{"text":"hi"}`, 404},
		{"create-malformed", "/api/sessions", `{`, 400},
		{"cancel-idle", "/api/sessions/" + a + "/cancel", ``, 409},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.req(t, http.MethodPost, tt.path, tt.body, nil)
			assert.Equal(t, tt.want, resp.StatusCode, body)
			assert.Contains(t, body, `"error"`)
		})
	}
	resp, body := e.req(t, http.MethodPost, "/api/sessions/"+a+"/prompt", `{"text":"`+strings.Repeat("y", session.MaxPromptBytes)+`"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	<-started
	resp, body = e.req(t, http.MethodPost, "/api/sessions/"+a+"/prompt", `{"text":"again"}`, nil)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	assert.JSONEq(t, `{"status":"steered"}`, body, "a prompt while a turn runs steers it")
	resp, body = e.req(t, http.MethodPost, "/api/sessions/"+b+"/prompt", `{"text":"other"}`, nil)
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode, body)
	resp, body = e.req(t, http.MethodPost, "/api/sessions/"+a+"/cancel", `{}`, nil)
	assert.Equal(t, http.StatusAccepted, resp.StatusCode, body)

	_, rd := e.attach(t, withTimeout(t), a, 0)
	got := readUntilDone(t, rd)
	assert.Contains(t, got[len(got)-1].data, `"outcome":"cancelled"`)
}

func TestProbes(t *testing.T) {
	e := start(t, opts{})
	resp, body := e.req(t, http.MethodGet, "/healthz", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"ok":true}`, body)
	resp, _ = e.req(t, http.MethodGet, "/readyz", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	e.kh.setDown(true)
	resp, body = e.req(t, http.MethodGet, "/readyz", "", nil)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Contains(t, body, "connection refused", "503 says why")
	resp, _ = e.req(t, http.MethodGet, "/healthz", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "healthz does not depend on the keyholder")
}

func TestPage(t *testing.T) {
	ui := fstest.MapFS{
		"index.html":           {Data: []byte("<!doctype html><title>breakglass</title>")},
		"assets/index-abc.js":  {Data: []byte("console.log(1)")},
		"manifest.webmanifest": {Data: []byte("{}")},
	}
	e := start(t, opts{api: Config{UI: ui}})
	tests := []struct {
		path  string
		want  int
		cache string
	}{
		{"/", 200, "no-cache"},
		{"/assets/index-abc.js", 200, "public, max-age=31536000, immutable"},
		{"/manifest.webmanifest", 200, "no-cache"},
		{"/assets/missing.js", 404, ""},
		{"/metrics", 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			resp, body := e.req(t, http.MethodGet, tt.path, "", nil)
			assert.Equal(t, tt.want, resp.StatusCode, body)
			if tt.cache != "" {
				assert.Equal(t, tt.cache, resp.Header.Get("Cache-Control"))
				assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
			}
		})
	}
	placeholder := start(t, opts{})
	resp, body := placeholder.req(t, http.MethodGet, "/", "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body, "breakglass")
}
