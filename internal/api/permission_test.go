package api

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/session"
	"breakglass/internal/uuid"
)

// askOnce asks Permit about one command, as claude does in careful mode.
func askOnce(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID}))
	a := t.Permit(ctx, claude.PermissionRequest{RequestID: uuid.New(), Tool: "Bash", Display: "systemctl restart nginx", Input: json.RawMessage(`{}`)})
	out := "ran"
	if !a.Allow {
		out = a.Message
	}
	emit(event.New(event.ToolResult, event.ToolResultData{ToolUseID: "t", Output: out, IsError: !a.Allow}))
	return claude.Outcome{Outcome: event.OutcomeSuccess}
}

func TestPermissionRoute(t *testing.T) {
	e := start(t, opts{runner: &fakeRunner{script: askOnce}})
	a, b := e.create(t), e.create(t)
	_, rd := e.attach(t, withTimeout(t), a, 0)
	resp, body := e.req(t, http.MethodPost, "/api/sessions/"+a+"/prompt", `{"text":"restart it"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	var pending event.PermissionData
	for pending.RequestID == "" {
		ev, err := rd.next()
		require.NoError(t, err)
		if ev.typ == "permission" {
			require.NoError(t, json.Unmarshal([]byte(ev.data), &pending))
		}
	}
	assert.Equal(t, "pending", pending.State)
	assert.Equal(t, "systemctl restart nginx", pending.Input)

	path := "/api/sessions/" + a + "/permissions/" + pending.RequestID
	tests := []struct {
		name, path, body string
		want             int
	}{
		{"unknown-request", "/api/sessions/" + a + "/permissions/" + uuid.New(), `{"allow":true}`, 404},
		{"other-session", "/api/sessions/" + b + "/permissions/" + pending.RequestID, `{"allow":true}`, 404},
		{"not-a-uuid", "/api/sessions/" + a + "/permissions/not-a-uuid", `{"allow":true}`, 404},
		{"traversal", "/api/sessions/" + a + "/permissions/..%2F" + pending.RequestID, `{"allow":true}`, 404},
		{"unknown-session", "/api/sessions/" + uuid.New() + "/permissions/" + pending.RequestID, `{"allow":true}`, 404},
		{"no-allow", path, `{"message":"hm"}`, 400},
		{"allow-string", path, `{"allow":"yes"}`, 400},
		{"unknown-field", path, `{"allow":true,"remember":true}`, 400},
		{"empty-body", path, ``, 400},
		{"huge-note", path, `{"allow":false,"message":"` + strings.Repeat("n", session.MaxPermissionMessage+1) + `"}`, 413},
		{"body-over-limit", path, `{"allow":false,"message":"` + strings.Repeat("n", 40<<10) + `"}`, 413},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := e.req(t, http.MethodPost, tt.path, tt.body, nil)
			assert.Equal(t, tt.want, resp.StatusCode, body)
			assert.Contains(t, body, `"error"`)
		})
	}
	resp, body = e.req(t, http.MethodPost, path, `{"allow":false,"message":"use reload, not restart"}`, nil)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.JSONEq(t, `{"request_id":"`+pending.RequestID+`","state":"denied"}`, body)
	resp, body = e.req(t, http.MethodPost, path, `{"allow":true}`, nil)
	assert.Equal(t, http.StatusConflict, resp.StatusCode, body)

	got := readUntilDone(t, rd)
	var out event.ToolResultData
	for _, ev := range got {
		if ev.typ == "tool_result" {
			require.NoError(t, json.Unmarshal([]byte(ev.data), &out))
		}
	}
	assert.Contains(t, out.Output, "use reload, not restart")
}

func TestPatchMode(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	for _, mode := range []string{"autopilot", "read-only", "careful"} {
		resp, body := e.req(t, http.MethodPatch, "/api/sessions/"+id, `{"mode":"`+mode+`"}`, nil)
		require.Equal(t, http.StatusOK, resp.StatusCode, body)
		var info session.Info
		require.NoError(t, json.Unmarshal([]byte(body), &info))
		assert.Equal(t, mode, info.Mode)
		got, err := e.sessions.Get(id)
		require.NoError(t, err)
		assert.Equal(t, mode, got.Mode)
	}
	resp, body := e.req(t, http.MethodPatch, "/api/sessions/"+uuid.New(), `{"mode":"careful"}`, nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode, body)
}
