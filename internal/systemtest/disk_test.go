package systemtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// checkLog asserts b is whole events.jsonl lines with ids 1, 2, 3… and
// returns how many.
func checkLog(t testing.TB, b []byte) int {
	t.Helper()
	if len(b) == 0 {
		return 0
	}
	require.True(t, bytes.HasSuffix(b, []byte("\n")), "the log ends in a torn line: %q", tail(b))
	lines := bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
	for i, l := range lines {
		var e struct {
			ID   int64  `json:"id"`
			Type string `json:"type"`
		}
		require.NoError(t, json.Unmarshal(l, &e), "line %d: %q", i+1, l)
		require.Equal(t, int64(i+1), e.ID, "line %d", i+1)
	}
	return len(lines)
}

func tail(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

// TestSessionsDiskFull: the sessions folder fills up in the middle of a
// turn. The web cannot use chmod for this (tests run as root in CI, and
// root writes through 0555), so the test caps the web's file size with
// RLIMIT_FSIZE, which binds root too: the next write of events.jsonl comes
// back short, then EFBIG, as on a full disk. The operator gets a clear
// `error` event, the turn still ends with done, the web stays up, and
// nothing already written is damaged: the torn part of the failed line is
// cut back. A later start (no cap) reloads the log, tolerates a torn last
// line left by a crash, closes the interrupted turn, and the conversation
// goes on.
func TestSessionsDiskFull(t *testing.T) {
	words := make([]string, 200)
	for i := range words {
		words[i] = fmt.Sprintf("w%d", i)
	}
	long := strings.Join(words, " ")
	w := stacktest.New(t, stacktest.Options{Script: []apidouble.Turn{
		apidouble.T(apidouble.Text("First answer.")),
		apidouble.T(apidouble.Text(long).Every(20 * time.Millisecond)),
		apidouble.T(apidouble.Text("Back after the disk filled.")),
	}})
	a := w.StartWeb(t)
	id := a.NewSession(t)
	logPath := filepath.Join(w.SessionsDir, id, "events.jsonl")

	a.Prompt(t, id, "first")
	first := a.Turn(t, id, 0, 2*time.Minute)
	require.Equal(t, "success", first[len(first)-1].Data["outcome"])
	before, err := os.ReadFile(logPath)
	require.NoError(t, err)
	require.Equal(t, len(first), checkLog(t, before))

	a.Prompt(t, id, "second, streaming")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := a.Attach(t, ctx, id, first[len(first)-1].ID)
	var second []ev
	for {
		e, err := st.Next()
		require.NoError(t, err)
		second = append(second, e)
		if e.Type == "text" {
			break
		}
		require.NotEqual(t, "done", e.Type, "%v", webtest.Types(second))
	}
	// The disk is full from here on for the web (claude, already running,
	// keeps its own limits).
	fi, err := os.Stat(logPath)
	require.NoError(t, err)
	limit := uint64(fi.Size()) + 40
	require.NoError(t, unix.Prlimit(a.Pid(), unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: limit, Max: limit}, nil))

	second = append(second, st.UntilDone(t)...)
	done := second[len(second)-1]
	t.Logf("second turn: %d events, done %v", len(second), done.Raw)
	var saveErr ev
	for _, e := range second {
		if e.Type == "error" {
			saveErr = e
			break
		}
	}
	require.NotEmpty(t, saveErr.Raw, "a clear error event when events cannot be saved: %v", webtest.Types(second))
	t.Logf("error event: %s", saveErr.Data["message"])
	assert.Contains(t, saveErr.Data["message"], "cannot be saved")
	text, _ := joinText(second)
	assert.Equal(t, long, text, "the turn streamed on in memory")

	// A new session cannot be written either once not even its small
	// session.json fits: refused, and nothing half made shows up in the
	// list, now or after a restart.
	tiny := uint64(16)
	require.NoError(t, unix.Prlimit(a.Pid(), unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: tiny, Max: tiny}, nil))
	code, body := a.Do(t, http.MethodPost, "/api/sessions", "{}")
	assert.Equal(t, http.StatusInsufficientStorage, code, body)
	assert.Contains(t, body, "sessions folder cannot be written")
	t.Logf("new session on the full disk: %d %s", code, body)
	code, _ = a.Do(t, http.MethodGet, "/healthz", "")
	assert.Equal(t, http.StatusOK, code, "the web stays up")
	code, body = a.Do(t, http.MethodGet, "/api/sessions", "")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 1, strings.Count(body, `"id"`), "only the one session: %s", body)
	code, body = a.Do(t, http.MethodGet, "/api/sessions/"+id, "")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"state":"idle"`)

	after, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.True(t, bytes.HasPrefix(after, before), "what was written before the disk filled is intact")
	saved := checkLog(t, after)
	assert.LessOrEqual(t, uint64(len(after)), limit)
	t.Logf("saved %d of %d events (%d bytes, cap %d)", saved, len(first)+len(second), len(after), limit)
	require.NoError(t, a.Stop())

	// A crash in the middle of a write leaves a torn last line.
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND, 0)
	require.NoError(t, err)
	_, err = f.WriteString(`{"id":` + fmt.Sprint(saved+1) + `,"type":"te`)
	require.NoError(t, err)
	require.NoError(t, f.Close())

	b := w.StartWeb(t)
	code, body = b.Do(t, http.MethodGet, "/api/sessions", "")
	assert.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 1, strings.Count(body, `"id"`), "the half-made session is not listed after a restart: %s", body)
	replay := b.History(t, id)
	require.Len(t, replay, saved+2, "the saved events, then the interrupted turn closed: %v", webtest.Types(replay))
	for i := 0; i < saved; i++ {
		want := first
		j := i
		if i >= len(first) {
			want, j = second, i-len(first)
		}
		assert.Equal(t, want[j].Type, replay[i].Type, "event %d", i+1)
		assert.JSONEq(t, want[j].Raw, replay[i].Raw, "event %d", i+1)
	}
	assert.Equal(t, []string{"error", "done"}, webtest.Types(replay[saved:]))
	fixed, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Equal(t, saved+2, checkLog(t, fixed), "the torn line is cut off, the closing events saved")

	b.Prompt(t, id, "third")
	third := b.Turn(t, id, int64(saved+2), 2*time.Minute)
	assert.Equal(t, "success", third[len(third)-1].Data["outcome"], "%v", webtest.Types(third))
	reqs := w.Double.MessageRequests()
	assert.Contains(t, strings.Join(reqs[len(reqs)-1].UserTexts(), "\n"), "first", "the conversation resumes")
	final, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.Equal(t, saved+2+len(third), checkLog(t, final))
}

// joinText joins the deltas of every text event of es.
func joinText(es []ev) (string, int) {
	var b strings.Builder
	n := 0
	for _, e := range es {
		if e.Type == "text" {
			b.WriteString(e.Data["delta"].(string))
			n++
		}
	}
	return b.String(), n
}
