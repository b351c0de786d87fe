package systemtest

import (
	"encoding/base64"
	"encoding/json"
	"image/png"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/devstack"
	"breakglass/internal/power"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// health asks a fresh web (the ladder is cached 5 s per web) for the ladder
// and checks it came within the 10 s budget.
func health(t *testing.T, w *stacktest.Stack) power.Health {
	t.Helper()
	wb := w.StartWeb(t)
	start := time.Now()
	status, body := wb.Do(t, http.MethodGet, "/api/vm/health", "")
	require.Equal(t, http.StatusOK, status, body)
	assert.Less(t, time.Since(start), power.DefaultHealthBudget+2*time.Second, "within the budget")
	var h power.Health
	require.NoError(t, json.Unmarshal([]byte(body), &h))
	assert.False(t, h.CheckedAt.IsZero())
	status, _ = wb.Do(t, http.MethodGet, "/readyz", "")
	assert.Equal(t, http.StatusOK, status, "/readyz stays 200 whichever rung is down")
	require.NoError(t, wb.Stop())
	return h
}

// TestHealthLadder: each rung's failure, simulated, gives its answer.
func TestHealthLadder(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{})
	w.StartKeyholder(t)

	t.Run("all-up", func(t *testing.T) {
		h := health(t, w)
		assert.True(t, h.PVE.OK, h.PVE.Error)
		assert.Equal(t, "running", h.VM.State)
		assert.Empty(t, h.VM.Lock)
		assert.True(t, h.GuestAgent.OK, h.GuestAgent.Error)
		assert.True(t, h.SSH.OK, h.SSH.Error)
	})
	t.Run("devvm-sshd-down", func(t *testing.T) {
		w.VM.SetSSHD(false)
		defer w.VM.SetSSHD(true)
		h := health(t, w)
		assert.True(t, h.PVE.OK)
		assert.True(t, h.GuestAgent.OK, "the guest agent lives on")
		assert.False(t, h.SSH.OK)
		assert.Contains(t, h.SSH.Error, "ssh devvm")
	})
	t.Run("guest-agent-dead", func(t *testing.T) {
		w.VM.SetGuestAgent(false)
		defer w.VM.SetGuestAgent(true)
		h := health(t, w)
		assert.True(t, h.PVE.OK)
		assert.False(t, h.GuestAgent.OK)
		assert.Equal(t, "QEMU guest agent is not running", h.GuestAgent.Error)
		assert.True(t, h.SSH.OK)
	})
	t.Run("vm-stopped-and-locked", func(t *testing.T) {
		w.VM.SetState(pvesim.Stopped)
		w.VM.SetLock("backup")
		defer func() { w.VM.SetLock(""); w.VM.SetState(pvesim.Running) }()
		h := health(t, w)
		assert.True(t, h.PVE.OK, "the host answers")
		assert.Equal(t, "stopped", h.VM.State)
		assert.Equal(t, "backup", h.VM.Lock)
		assert.False(t, h.GuestAgent.OK)
		assert.Contains(t, h.GuestAgent.Error, "not running")
		assert.False(t, h.SSH.OK)
	})
}

// TestHealthLadderHostUnreachable: a Proxmox host that refuses connections.
func TestHealthLadderHostUnreachable(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{PVE: devstack.PVEDown})
	w.StartKeyholder(t)
	h := health(t, w)
	assert.False(t, h.PVE.OK)
	assert.NotEmpty(t, h.PVE.Error)
	assert.Equal(t, "unknown", h.VM.State)
	assert.False(t, h.GuestAgent.OK)
	assert.True(t, h.SSH.OK, "the devvm may still answer")
}

// TestScreenshotStoredInSession: the operator's screenshot in a session is
// kept in the session's folder by the web and served as image/png with
// nosniff; the transcript names it.
func TestScreenshotStoredInSession(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{})
	w.StartKeyholder(t)
	wb := w.StartWeb(t)
	id := wb.NewSession(t)
	status, body := wb.Do(t, http.MethodPost, "/api/vm/screenshot", `{"session_id":"`+id+`"}`)
	require.Equal(t, http.StatusOK, status, body)
	var res struct {
		ContentType  string `json:"content_type"`
		OutputBase64 string `json:"output_base64"`
		Image        string `json:"image"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &res))
	assert.Equal(t, "image/png", res.ContentType)
	require.NotEmpty(t, res.Image)
	stored, err := os.ReadFile(filepath.Join(w.SessionsDir, id, "images", res.Image))
	require.NoError(t, err, "the web's own copy, in the session's folder")
	sent, err := base64.StdEncoding.DecodeString(res.OutputBase64)
	require.NoError(t, err)
	assert.Equal(t, sent, stored)

	resp, err := wb.Client.Get(wb.URL + power.ImagePath(id, res.Image))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode, "images need sign-in like every route")
	req, err := http.NewRequest(http.MethodGet, wb.URL+power.ImagePath(id, res.Image), nil)
	require.NoError(t, err)
	req.Header.Set("x-authentik-username", "alice")
	resp, err = wb.Client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "image/png", resp.Header.Get("Content-Type"))
	assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"))
	img, err := png.Decode(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, pvesim.ScreenWidth, img.Bounds().Dx())

	for _, bad := range []string{
		"../session.json", "..%2fsession.json", "screenshot-1-00000000.png", "x.png",
		"screenshot-1-0000000g.png", "%2e%2e%2fevents.jsonl", "SCREENSHOT-1-00000000.PNG",
	} {
		status, _ := wb.Do(t, http.MethodGet, "/api/sessions/"+id+"/images/"+bad, "")
		assert.Contains(t, []int{http.StatusNotFound, http.StatusBadRequest, http.StatusMovedPermanently}, status, bad)
	}
	status, _ = wb.Do(t, http.MethodGet, "/api/sessions/not-a-uuid/images/"+res.Image, "")
	assert.Equal(t, http.StatusNotFound, status)

	_, log := wb.Do(t, http.MethodGet, "/api/sessions/"+id+"/export?format=json", "")
	assert.Contains(t, log, res.Image, "the transcript names the picture")
	assert.False(t, strings.Contains(log, res.OutputBase64[:64]), "not the picture itself")
}

// TestAgentScreenshotThenRead: in the real web, with the agent confined,
// the real claude CLI runs `pve screenshot` (over the web's socket), which
// saves the PNG in the session's work folder and prints its path; the
// CLI's Read tool opens that path and hands the model an image; the web
// kept its own copy in the session's images folder.
func TestAgentScreenshotThenRead(t *testing.T) {
	w := stacktest.New(t, stacktest.Options{})
	w.StartKeyholder(t)
	wb := w.StartWeb(t)
	id := wb.NewSession(t)
	path := filepath.Join(w.SessionsDir, id, "work", "screenshot-1.png")
	w.Double.Push(
		apidouble.T(apidouble.Bash("pve screenshot")),
		apidouble.AfterToolResult(apidouble.ToolUse("Read", map[string]any{"file_path": path})),
		apidouble.AfterToolResult(apidouble.Text("A login prompt.")),
	)
	wb.Prompt(t, id, "what does the screen show?")
	got := wb.Turn(t, id, 0, 2*time.Minute)

	var results []map[string]any
	for _, e := range got {
		if e.Type == "tool_result" {
			results = append(results, e.Data)
		}
	}
	require.Len(t, results, 2, "%v", webtest.Types(got))
	assert.Equal(t, false, results[0]["is_error"], "pve screenshot: %v", results[0]["output"])
	assert.Contains(t, results[0]["output"], path, "pve prints the path")
	assert.Equal(t, false, results[1]["is_error"], "Read: %v", results[1]["output"])
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), "\x89PNG"))
	reqs := w.Double.MessageRequests()
	require.NotEmpty(t, reqs)
	assert.Contains(t, string(reqs[len(reqs)-1].Body), `"media_type":"image/png"`, "the model got the image")
	images, err := os.ReadDir(filepath.Join(w.SessionsDir, id, "images"))
	require.NoError(t, err)
	assert.Len(t, images, 1, "the web's own copy")
	assert.Equal(t, "success", got[len(got)-1].Data["outcome"], "%v", webtest.Types(got))
}
