package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/notify"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/ntfydouble"
	"breakglass/internal/testing/pushdouble"
	"breakglass/internal/testing/stacktest"
)

// fakeVM is a keyholder on the socket whose `status` answers the state the
// test sets; every other verb is refused.
type fakeVM struct {
	mu    sync.Mutex
	state string
}

func (f *fakeVM) set(s string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state = s
}

func (f *fakeVM) serve(t *testing.T, socketDir string) {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"ok":true}`) })
	mux.HandleFunc("POST /v1/verbs/status", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		st := f.state
		f.mu.Unlock()
		_ = json.NewEncoder(w).Encode(ipc.Result{Verb: "status", VMID: 102, Output: "status: " + st + "\n"})
	})
	ln, err := ipc.Listen(filepath.Join(socketDir, ipc.SocketName))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- ipc.Serve(ctx, ln, ipc.ServerConfig{Handler: mux}) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
	})
}

// pushed waits for the next push and returns its decrypted message.
func pushed(t *testing.T, ps *pushdouble.Server, w *stacktest.Web) notify.Message {
	t.Helper()
	select {
	case m := <-ps.Delivered():
		var msg notify.Message
		require.NoError(t, json.Unmarshal(m.Plaintext, &msg))
		return msg
	case r := <-ps.Rejected():
		t.Fatalf("push refused: %s", r.Reason)
	case <-time.After(60 * time.Second):
		t.Fatalf("no push within 60s:\n%s", w.Logs())
	}
	return notify.Message{}
}

func ntfyed(t *testing.T, nt *ntfydouble.Server) ntfydouble.Message {
	t.Helper()
	select {
	case m := <-nt.Published():
		return m
	case r := <-nt.Rejected():
		t.Fatalf("ntfy refused: %s", r)
	case <-time.After(60 * time.Second):
		t.Fatal("nothing on ntfy within 60s")
	}
	return ntfydouble.Message{}
}

// TestNotificationsEndToEnd runs the web binary with a push service double,
// an ntfy double and a keyholder whose VM the test stops and starts: the
// test button, a turn that ended with nobody attached, an agent's approval
// and the VM watch each reach both, as short messages with their links.
func TestNotificationsEndToEnd(t *testing.T) {
	s := newStack(t,
		apidouble.T(apidouble.Text("All good.")),
		apidouble.T(apidouble.Text("I will reset the VM."), apidouble.Bash("pve reset")),
		apidouble.AfterToolResult(apidouble.Text("Done.")),
	)
	vm := &fakeVM{state: "running"}
	require.NoError(t, os.MkdirAll(s.SocketDir, 0o700))
	vm.serve(t, s.SocketDir)
	nt := ntfydouble.New("ntfy-secret")
	defer nt.Close()
	tokenFile := filepath.Join(s.Dir, "ntfy-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("ntfy-secret\n"), 0o600))
	w := s.StartWeb(t, "BREAKGLASS_NTFY_URL="+nt.TopicURL("bg"), "BREAKGLASS_NTFY_TOKEN_FILE="+tokenFile, "BREAKGLASS_PUBLIC_URL=https://bg.example", "BREAKGLASS_WATCH_SECONDS=1")

	code, body := w.Do(t, http.MethodGet, "/api/push/key", "")
	require.Equal(t, http.StatusOK, code, body)
	var key notify.KeyResponse
	require.NoError(t, json.Unmarshal([]byte(body), &key))
	assert.True(t, key.Ntfy)
	ps, err := pushdouble.New(key.PublicKey)
	require.NoError(t, err)
	defer ps.Close()
	sub, err := ps.Subscribe()
	require.NoError(t, err)
	b, _ := json.Marshal(sub)
	code, body = w.Do(t, http.MethodPost, "/api/push/subscriptions", string(b))
	require.Equal(t, http.StatusCreated, code, body)

	code, body = w.Do(t, http.MethodPost, "/api/push/test", "")
	require.Equal(t, http.StatusAccepted, code, body)
	assert.Equal(t, notify.Test(), pushed(t, ps, w))
	assert.Equal(t, notify.Test().Title, ntfyed(t, nt).Title)

	// A turn nobody watches ends: pushed with its outcome and link.
	id := w.NewSession(t)
	w.Prompt(t, id, "check it")
	msg := pushed(t, ps, w)
	assert.Equal(t, notify.TurnEnded(id, "success"), msg)
	n := ntfyed(t, nt)
	assert.Equal(t, "https://bg.example/#/s/"+id, n.Click)
	assert.NotContains(t, n.Body, "All good")

	// The agent asks for a reset: pushed with the verb name, never argv.
	w.Prompt(t, id, "reset it")
	msg = pushed(t, ps, w)
	assert.Equal(t, notify.Approval(id, "reset"), msg)
	n = ntfyed(t, nt)
	assert.Equal(t, msg.Title, n.Title)
	assert.NotContains(t, n.Body+n.Title, "pve reset")
	code, body = w.Do(t, http.MethodPost, "/api/sessions/"+id+"/cancel", "")
	require.Equal(t, http.StatusAccepted, code, body)
	// That turn's end is not pushed unless nobody is attached: nobody is.
	assert.Equal(t, notify.TurnEnded(id, "cancelled").Kind, pushed(t, ps, w).Kind)
	ntfyed(t, nt)

	// The VM stops, then runs again: one push each, after two readings.
	vm.set("stopped")
	assert.Equal(t, notify.VMChanged(notify.VMStopped), pushed(t, ps, w))
	assert.Equal(t, "VM stopped", ntfyed(t, nt).Title)
	vm.set("running")
	assert.Equal(t, notify.VMChanged(notify.VMRunning), pushed(t, ps, w))
	assert.Equal(t, "VM running again", ntfyed(t, nt).Title)

	code, body = w.Do(t, http.MethodGet, "/api/push/subscriptions", "")
	require.Equal(t, http.StatusOK, code)
	var st notify.Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Len(t, st.Subscriptions, 1)
	require.NotNil(t, st.Ntfy)

	resp, err := http.Get(w.MetricsURL)
	require.NoError(t, err)
	defer resp.Body.Close()
	mb, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Contains(t, string(mb), `breakglass_vm_state{state="running"} 1`)
	assert.Contains(t, string(mb), `breakglass_push_deliveries_total{channel="webpush",outcome="ok"}`)

	// The key and the subscription are kept 0600 under the sessions folder.
	for _, f := range []string{"vapid.json", "subscriptions.json"} {
		fi, err := os.Stat(filepath.Join(s.SessionsDir, "push", f))
		require.NoError(t, err)
		assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), f)
	}
	assert.NotContains(t, w.Logs(), "ntfy-secret", "the token is never logged")
	assert.NotContains(t, w.Logs(), sub.Keys.Auth, "subscription keys are never logged")
}
