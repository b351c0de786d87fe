package api

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/event"
	"breakglass/internal/session"
)

func decodeInfos(t *testing.T, body string) []session.Info {
	t.Helper()
	var infos []session.Info
	require.NoError(t, json.Unmarshal([]byte(body), &infos))
	return infos
}

// TestSessionManagementRoutes: rename, archive (hidden, listed with
// ?archived=1), restore, search by title and by prompt, and export in both
// formats, over HTTP.
func TestSessionManagementRoutes(t *testing.T) {
	e := start(t, opts{})
	disk := e.create(t)
	other := e.create(t)
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+disk+"/prompt", `{"text":"why is /var full?"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	_, rd := e.attach(t, withTimeout(t), disk, 0)
	readUntilDone(t, rd)

	resp, body := e.req(t, http.MethodPatch, "/api/sessions/"+other, `{"title":"Night shift"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, `"title":"Night shift"`)

	resp, body = e.req(t, http.MethodGet, "/api/sessions?q="+url.QueryEscape("/VAR"), "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	infos := decodeInfos(t, body)
	require.Len(t, infos, 1)
	assert.Equal(t, disk, infos[0].ID)
	resp, body = e.req(t, http.MethodGet, "/api/sessions?q=%ff", "", nil)
	require.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
	assert.Contains(t, body, `"code":"bad_query"`)
	resp, body = e.req(t, http.MethodGet, "/api/sessions?q=night", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.Len(t, decodeInfos(t, body), 1)

	resp, body = e.req(t, http.MethodDelete, "/api/sessions/"+other, "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Contains(t, body, `"archived":true`)
	_, body = e.req(t, http.MethodGet, "/api/sessions", "", nil)
	infos = decodeInfos(t, body)
	require.Len(t, infos, 1)
	assert.Equal(t, disk, infos[0].ID)
	_, body = e.req(t, http.MethodGet, "/api/sessions?archived=1", "", nil)
	infos = decodeInfos(t, body)
	require.Len(t, infos, 1)
	assert.Equal(t, other, infos[0].ID)
	resp, _ = e.req(t, http.MethodGet, "/api/sessions/"+other, "", nil)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "an archived session can still be read")

	resp, body = e.req(t, http.MethodPost, "/api/sessions/"+other+"/restore", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	_, body = e.req(t, http.MethodGet, "/api/sessions", "", nil)
	assert.Len(t, decodeInfos(t, body), 2)

	resp, body = e.req(t, http.MethodGet, "/api/sessions/"+disk+"/export?format=json", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	assert.Contains(t, resp.Header.Get("Content-Disposition"), "attachment;")
	var exp session.Export
	require.NoError(t, json.Unmarshal([]byte(body), &exp))
	assert.Len(t, exp.Events, int(exp.LastEventID))
	assert.Equal(t, disk, exp.ID)

	resp, body = e.req(t, http.MethodGet, "/api/sessions/"+disk+"/export", "", nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.Equal(t, "text/markdown; charset=utf-8", resp.Header.Get("Content-Type"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	assert.Contains(t, body, "> why is /var full?")
	assert.Contains(t, body, "prompt by alice")
}

// TestPatchSessionRefusals: every PATCH that cannot be applied says why,
// and the title stays.
func TestPatchSessionRefusals(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	resp, _ := e.req(t, http.MethodPatch, "/api/sessions/"+id, `{"title":"kept"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	tests := []struct {
		name, body string
		want       int
		code       wire.Code
	}{
		{"empty-body", "", http.StatusBadRequest, wire.CodeBadRequest},
		{"no-field", `{}`, http.StatusBadRequest, wire.CodeBadRequest},
		{"unknown-field", `{"titel":"x"}`, http.StatusBadRequest, wire.CodeBadRequest},
		{"title-null", `{"title":null}`, http.StatusBadRequest, wire.CodeBadRequest},
		{"title-number", `{"title":5}`, http.StatusBadRequest, wire.CodeBadRequest},
		{"title-empty", `{"title":""}`, http.StatusBadRequest, wire.CodeBadTitle},
		{"title-control", `{"title":"a\u001b[2Jb"}`, http.StatusBadRequest, wire.CodeBadTitle},
		{"title-10k", `{"title":"` + strings.Repeat("x", 10<<10) + `"}`, http.StatusBadRequest, wire.CodeBadTitle},
		{"title-body-over-limit", `{"title":"` + strings.Repeat("x", 20<<10) + `"}`, http.StatusRequestEntityTooLarge, wire.CodeBodyTooLarge},
		{"mode-unknown", `{"mode":"yolo"}`, http.StatusBadRequest, wire.CodeBadMode},
		{"mode-case", `{"mode":"Careful"}`, http.StatusBadRequest, wire.CodeBadMode},
		{"mode-null", `{"mode":null}`, http.StatusBadRequest, wire.CodeBadRequest},
		{"mode-and-title", `{"mode":"careful","title":"x"}`, http.StatusBadRequest, wire.CodeBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.req(t, http.MethodPatch, "/api/sessions/"+id, tt.body, nil)
			assert.Equal(t, tt.want, resp.StatusCode, body)
			var eb wire.ErrorBody
			require.NoError(t, json.Unmarshal([]byte(body), &eb), body)
			assert.Equal(t, tt.code, eb.Code, body)
			assert.NotEmpty(t, eb.Error)
			info, err := e.sessions.Get(id)
			require.NoError(t, err)
			assert.Equal(t, "kept", info.Title)
		})
	}
}

// TestExportOfUnreadableLogIsAborted: a log damaged on disk under a live
// session makes the export fail visibly (the response is aborted), never
// a record cut short that looks whole.
func TestExportOfUnreadableLogIsAborted(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	for range 50 {
		require.NoError(t, e.sessions.Append(id, event.New(event.Verb, event.VerbData{Verb: "status", Output: strings.Repeat("x", 2000)})))
	}
	logPath := filepath.Join(e.dir, "sessions", id, "events.jsonl")
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	copy(b[len(b)/2:], strings.Repeat("#", 100))
	require.NoError(t, os.WriteFile(logPath, b, 0o600))
	for _, format := range []string{"md", "json"} {
		req, err := http.NewRequest(http.MethodGet, e.url+"/api/sessions/"+id+"/export?format="+format, nil)
		require.NoError(t, err)
		req.Header.Set(IdentityHeader, "alice")
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		assert.Error(t, err, "%s: the client sees the export failed", format)
	}
}
