package main

import (
	"context"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/webtest"
)

// TestRealOperatorInTheLoop runs the real web, confined, with the real
// claude CLI against the scripted API double (docs/operator-loop.md): a
// command claude asks about waits for the operator in careful mode and
// runs only when allowed; denied or unanswered it never runs; read-only
// refuses it unasked; autopilot runs it unasked; a prompt sent during a
// turn steers it.
func TestRealOperatorInTheLoop(t *testing.T) {
	s := newStack(t)
	w := s.StartWeb(t, "BREAKGLASS_AGENT_MODE=careful", "BREAKGLASS_PERMISSION_TIMEOUT_SECONDS=3")
	sessions := s.SessionsDir

	// ask scripts a turn whose command writes a marker in the session's
	// own tmp folder: outside the work folder, so claude asks, and inside
	// the sandbox, so it can run once allowed.
	ask := func(t *testing.T, id string) (marker string) {
		marker = filepath.Join(sessions, id, "tmp", "marker")
		s.Double.Push(
			apidouble.T(apidouble.Bash("touch "+marker+" && echo touched")),
			apidouble.AfterToolResult(apidouble.Text("Done.")),
		)
		return marker
	}
	// untilPermission reads the stream up to the next permission event.
	untilPermission := func(t *testing.T, st *webtest.Stream) webtest.Event {
		for {
			e, err := st.Next()
			require.NoError(t, err)
			require.NotEqual(t, "done", e.Type, "the turn ended before a permission event")
			if e.Type == "permission" {
				return e
			}
		}
	}
	permissions := func(evs []webtest.Event) []webtest.Event {
		var out []webtest.Event
		for _, e := range evs {
			if e.Type == "permission" {
				out = append(out, e)
			}
		}
		return out
	}
	toolOutput := func(evs []webtest.Event) string {
		for _, e := range evs {
			if e.Type == "tool_result" {
				out, _ := e.Data["output"].(string)
				return out
			}
		}
		return ""
	}
	attach := func(t *testing.T, id string, last int64) *webtest.Stream {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		t.Cleanup(cancel)
		return w.Attach(t, ctx, id, last)
	}

	t.Run("careful-allowed-runs", func(t *testing.T) {
		id := w.NewSession(t)
		marker := ask(t, id)
		st := attach(t, id, 0)
		w.Prompt(t, id, "leave a marker")
		p := untilPermission(t, st)
		assert.Equal(t, "pending", p.Data["state"])
		assert.Equal(t, "Bash", p.Data["tool"])
		assert.Equal(t, "touch "+marker+" && echo touched", p.Data["input"])
		assert.NoFileExists(t, marker, "nothing runs before the answer")
		st.Close()
		rid := p.Data["request_id"].(string)
		code, body := w.Do(t, http.MethodPost, "/api/sessions/"+id+"/permissions/"+rid, `{"allow":true}`)
		require.Equal(t, http.StatusOK, code, body)
		code, _ = w.Do(t, http.MethodPost, "/api/sessions/"+id+"/permissions/"+rid, `{"allow":true}`)
		assert.Equal(t, http.StatusConflict, code)
		// A client reconnecting from the start sees the question and its
		// answer once each, by the same id.
		got := attach(t, id, 0).UntilDone(t)
		ps := permissions(got)
		require.Len(t, ps, 2)
		assert.Equal(t, []any{"pending", "allowed"}, []any{ps[0].Data["state"], ps[1].Data["state"]})
		assert.Equal(t, rid, ps[1].Data["request_id"])
		assert.Equal(t, "alice", ps[1].Data["by"])
		assert.FileExists(t, marker)
		assert.Equal(t, "touched", toolOutput(got), "its output streams")
	})

	t.Run("careful-denied-never-runs", func(t *testing.T) {
		id := w.NewSession(t)
		marker := ask(t, id)
		st := attach(t, id, 0)
		w.Prompt(t, id, "leave a marker")
		rid := untilPermission(t, st).Data["request_id"].(string)
		code, body := w.Do(t, http.MethodPost, "/api/sessions/"+id+"/permissions/"+rid, `{"allow":false,"message":"not today"}`)
		require.Equal(t, http.StatusOK, code, body)
		got := st.UntilDone(t)
		assert.NoFileExists(t, marker)
		assert.Contains(t, toolOutput(got), "not today")
		reqs := s.Double.MessageRequests()
		results := reqs[len(reqs)-1].ToolResults()
		require.NotEmpty(t, results)
		assert.Contains(t, results[len(results)-1].Text, "not today", "the model reads the note")
	})

	t.Run("careful-unanswered-expires", func(t *testing.T) {
		id := w.NewSession(t)
		marker := ask(t, id)
		w.Prompt(t, id, "leave a marker")
		got := attach(t, id, 0).UntilDone(t)
		ps := permissions(got)
		require.Len(t, ps, 2)
		assert.Equal(t, "expired", ps[1].Data["state"])
		assert.NoFileExists(t, marker)
		assert.Contains(t, toolOutput(got), "did not answer")
	})

	t.Run("read-only-denies-unasked", func(t *testing.T) {
		id := w.NewSession(t)
		code, body := w.Do(t, http.MethodPatch, "/api/sessions/"+id, `{"mode":"read-only"}`)
		require.Equal(t, http.StatusOK, code, body)
		marker := ask(t, id)
		w.Prompt(t, id, "leave a marker")
		got := attach(t, id, 0).UntilDone(t)
		ps := permissions(got)
		require.Len(t, ps, 1)
		assert.Equal(t, "denied", ps[0].Data["state"])
		assert.Equal(t, "read-only", ps[0].Data["by"])
		assert.NoFileExists(t, marker)
	})

	t.Run("autopilot-never-asks", func(t *testing.T) {
		id := w.NewSession(t)
		code, body := w.Do(t, http.MethodPatch, "/api/sessions/"+id, `{"mode":"autopilot"}`)
		require.Equal(t, http.StatusOK, code, body)
		assert.Contains(t, body, `"mode":"autopilot"`)
		marker := ask(t, id)
		w.Prompt(t, id, "leave a marker")
		got := attach(t, id, 0).UntilDone(t)
		assert.Empty(t, permissions(got))
		assert.FileExists(t, marker)
	})

	t.Run("steer-reaches-the-running-turn", func(t *testing.T) {
		id := w.NewSession(t)
		s.Double.Push(
			apidouble.T(apidouble.Bash("sleep 3; echo first-step")),
			apidouble.AfterToolResult(apidouble.Text("Checked dmesg too.")),
		)
		st := attach(t, id, 0)
		w.Prompt(t, id, "check the load")
		for {
			e, err := st.Next()
			require.NoError(t, err)
			if e.Type == "tool" {
				break
			}
		}
		code, body := w.Do(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"also check dmesg"}`)
		require.Equal(t, http.StatusAccepted, code, body)
		assert.JSONEq(t, `{"status":"steered"}`, body)
		got := st.UntilDone(t)
		var steers int
		for _, e := range append([]webtest.Event(nil), got...) {
			if e.Type == "user" && e.Data["steer"] == true {
				steers++
			}
		}
		assert.Equal(t, 1, steers, "once in the transcript")
		reqs := s.Double.MessageRequests()
		assert.Contains(t, string(reqs[len(reqs)-1].Body), "also check dmesg", "the model saw it in the same turn")
		assert.Equal(t, "success", got[len(got)-1].Data["outcome"])
	})
}
