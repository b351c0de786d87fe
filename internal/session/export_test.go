package session

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
)

// incidentTurn is a turn with a command, its output (holding a fence of its
// own), and text around it.
func incidentTurn(_ context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID, Model: "sonnet"}))
	emit(event.New(event.Text, event.TextData{Delta: "Checking the "}))
	emit(event.New(event.Text, event.TextData{Delta: "disk."}))
	emit(event.New(event.Tool, event.ToolData{ToolUseID: "t1", Name: "Bash", Input: "ssh devvm df -h /var"}))
	emit(event.New(event.ToolResult, event.ToolResultData{ToolUseID: "t1", Output: "/dev/vda1  100%  /var\n```\nnot a fence end"}))
	emit(event.New(event.Text, event.TextData{Delta: "The disk is full."}))
	emit(event.New(event.Result, event.ResultData{Subtype: "success", NumTurns: 2, DurationMS: 1500, TotalCostUSD: 0.02}))
	return claude.Outcome{Outcome: event.OutcomeSuccess}
}

// logLines decodes session id's events.jsonl.
func logLines(t *testing.T, dir, id string) []event.Event {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, id, eventsFile))
	require.NoError(t, err)
	defer f.Close()
	var out []event.Event
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, maxLine)
	for sc.Scan() {
		var e event.Event
		require.NoError(t, json.Unmarshal(sc.Bytes(), &e))
		out = append(out, e)
	}
	require.NoError(t, sc.Err())
	return out
}

func incidentSession(t *testing.T) (*Manager, string, string) {
	t.Helper()
	dir := t.TempDir()
	m := newManager(t, Config{Dir: dir, Runner: &fakeRunner{script: incidentTurn}})
	info, err := m.Create()
	require.NoError(t, err)
	require.NoError(t, m.Prompt(info.ID, "The VM is down.\nCheck it.", "alice"))
	waitDone(t, m, info.ID, 0)
	code := 0
	require.NoError(t, m.Append(info.ID, event.New(event.Verb, event.VerbData{Verb: "reset", Actor: "bob", ExitCode: &code, Output: "reset: ok", DurationMS: 900})))
	require.NoError(t, m.Append(info.ID, event.New(event.Approval, map[string]any{"approval_id": "a1", "verb": "guest-exec", "args": []string{"systemctl", "restart", "nginx"}, "state": "approved", "by": "carol"})))
	require.NoError(t, m.Append(info.ID, event.New(event.Verb, event.VerbData{Verb: "guest-exec", Actor: "agent", ExitCode: &code, DurationMS: 40,
		Args: []string{"systemctl", "restart", "nginx"}, Output: `{"exitcode":0}`})))
	require.NoError(t, m.Append(info.ID, event.New(event.Verb, event.VerbData{Verb: "screenshot", Actor: "bob", ExitCode: &code, DurationMS: 60,
		Image: "screenshot-1764650000000-0a1b2c3d.png"})))
	require.NoError(t, m.Append(info.ID, event.New(event.Error, event.ErrorData{Message: "keyholder slow"})))
	return m, dir, info.ID
}

// TestExportJSONRoundTrips: the JSON export holds every event exactly as
// the log does, also for an archived session.
func TestExportJSONRoundTrips(t *testing.T) {
	m, dir, id := incidentSession(t)
	_, err := m.Archive(id)
	require.NoError(t, err)
	snap, err := m.Snapshot(id)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteJSON(&buf, snap))
	var got Export
	dec := json.NewDecoder(&buf)
	dec.DisallowUnknownFields()
	require.NoError(t, dec.Decode(&got))
	assert.Equal(t, id, got.ID)
	assert.True(t, got.Archived)
	want := logLines(t, dir, id)
	require.Len(t, got.Events, len(want))
	require.Len(t, got.Events, int(got.LastEventID))
	for i := range want {
		assert.Equal(t, want[i].ID, got.Events[i].ID)
		assert.Equal(t, want[i].Type, got.Events[i].Type)
		assert.True(t, want[i].Time.Equal(got.Events[i].Time))
		assert.JSONEq(t, string(want[i].Data), string(got.Events[i].Data))
	}
}

// TestExportMarkdownIsAnIncidentRecord: prompts with who and when, the
// agent's text whole, each command with its output (a fence in the output
// cannot end the block), verbs and approvals with who decided.
func TestExportMarkdownIsAnIncidentRecord(t *testing.T) {
	m, _, id := incidentSession(t)
	_, err := m.Rename(id, "VM down at night")
	require.NoError(t, err)
	snap, err := m.Snapshot(id)
	require.NoError(t, err)
	var buf bytes.Buffer
	require.NoError(t, WriteMarkdown(&buf, snap, time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)))
	md := buf.String()
	for _, want := range []string{
		"# Incident record: VM down at night",
		"- Session: `" + id + "`",
		"- Exported: 2026-05-01 00:00:00 UTC",
		"prompt by alice",
		"> The VM is down.\n> Check it.\n",
		"Checking the disk.",
		"The disk is full.",
		"**Command** (Bash)",
		"```\nssh devvm df -h /var\n```",
		"````\n/dev/vda1  100%  /var\n```\nnot a fence end\n````",
		"**Verb `reset`** by bob",
		"exit 0, 900 ms",
		"reset: ok",
		"**Approval** `guest-exec systemctl restart nginx` (a1): approved by carol",
		"Arguments: `[\"systemctl\",\"restart\",\"nginx\"]`",
		"Screenshot: `images/screenshot-1764650000000-0a1b2c3d.png` in the session's folder",
		"**Error**",
		"keyholder slow",
		"turn ended: success",
	} {
		assert.Contains(t, md, want)
	}
}
