package signin_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/api/wire"
	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/power"
	"breakglass/internal/signin"
	"breakglass/internal/testing/logtest"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/testing/sshdtest"
)

const (
	rpID   = "localhost"
	origin = "http://localhost:8080"
)

// world is a real keyholder (presence required, alice enrolled, enrollment
// open) on a socket, and the sign-in routes in front of it.
type world struct {
	url   string
	alice *passkey.Authenticator
	code  string
	ops   string
	svc   *signin.Service
}

func newWorld(t *testing.T) *world {
	t.Helper()
	dir, err := os.MkdirTemp("", "si")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	pve, _, _ := sshdtest.WriteKey(t, dir)
	devvm, _, _ := sshdtest.WriteKey(t, dir)
	_, hostPub, _ := sshdtest.WriteKey(t, t.TempDir())
	kh := filepath.Join(dir, "known_hosts")
	pin := string(ssh.MarshalAuthorizedKey(hostPub))
	require.NoError(t, os.WriteFile(kh, []byte("192.0.2.10 "+pin+"[192.0.2.20]:2222 "+pin), 0o644))
	alice := passkey.New(rpID, origin)
	ops := filepath.Join(dir, "operators")
	require.NoError(t, os.WriteFile(ops, []byte(alice.Line("alice")+"\n"), 0o644))
	log := &logtest.Buffer{}
	k, err := keyholder.New(keyholder.Config{
		PVE: keyholder.Host{Host: "192.0.2.10", User: "root"}, PVEKeyPath: pve,
		DevVM: keyholder.Host{Host: "192.0.2.20", Port: 2222, User: "breakglass"}, DevVMKeyPath: devvm,
		KnownHostsPath: kh, RPID: rpID, Origins: []string{origin}, OperatorsPath: ops, Enroll: true,
		Logger: hclog.New(&hclog.LoggerOptions{JSONFormat: true, Output: log}),
	})
	require.NoError(t, err)
	t.Cleanup(k.Close)
	code := log.WaitFor(t, "@message", "enrollment open: type this code on the Enroll page", time.Second)[0]["code"].(string)
	l, err := ipc.Listen(filepath.Join(dir, "run", ipc.SocketName))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ipc.Serve(ctx, l, ipc.ServerConfig{Handler: k.Handler(), ShutdownTimeout: time.Second})
	}()
	client := ipc.NewClient(filepath.Join(dir, "run", ipc.SocketName))
	t.Cleanup(func() { client.Close(); cancel(); <-done })

	svc, err := signin.New(signin.Config{Keyholder: client})
	require.NoError(t, err)
	r := mux.NewRouter()
	for _, rt := range svc.Routes() {
		r.HandleFunc(rt.Path, rt.Open).Methods(rt.Method)
	}
	r.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		name, ok := svc.Operator(r)
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, name)
	})
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	return &world{url: srv.URL, alice: alice, code: code, ops: ops, svc: svc}
}

// post sends body as JSON with the browser's same-origin headers.
func (w *world) post(t *testing.T, path, body string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, w.url+path, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func (w *world) whoami(t *testing.T, c *http.Cookie) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, w.url+"/whoami", nil)
	require.NoError(t, err)
	if c != nil {
		req.AddCookie(c)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// signIn runs the browser's sign-in with passkey a.
func (w *world) signIn(t *testing.T, a *passkey.Authenticator, tweaks ...passkey.Tweak) (*http.Response, string) {
	t.Helper()
	resp, body := w.post(t, "/api/login/options", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var opts power.RequestOptions
	require.NoError(t, json.Unmarshal([]byte(body), &opts))
	p := a.Get(ipc.Challenge{ChallengeID: opts.ChallengeID, Challenge: opts.PublicKey.Challenge}, tweaks...)
	b, err := json.Marshal(signin.LoginRequest{Presence: &p})
	require.NoError(t, err)
	return w.post(t, "/api/login", string(b))
}

func TestSignInSetsTheCookie(t *testing.T) {
	w := newWorld(t)
	resp, body := w.signIn(t, w.alice)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.JSONEq(t, `{"operator":"alice"}`, body)
	cookies := resp.Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	assert.Equal(t, signin.CookieName, c.Name, "plain HTTP: no __Host- prefix")
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
	assert.Equal(t, int(signin.SessionTTL/time.Second), c.MaxAge)
	assert.Len(t, c.Value, 43, "32 random bytes, base64url")

	status, name := w.whoami(t, c)
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "alice", name)

	resp, _ = w.post(t, "/api/logout", "", c)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	status, _ = w.whoami(t, c)
	assert.Equal(t, http.StatusUnauthorized, status, "signed out")
}

func TestSignInSecureCookieOverHTTPS(t *testing.T) {
	w := newWorld(t)
	resp, body := w.post(t, "/api/login/options", "")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var opts power.RequestOptions
	require.NoError(t, json.Unmarshal([]byte(body), &opts))
	p := w.alice.Get(ipc.Challenge{ChallengeID: opts.ChallengeID, Challenge: opts.PublicKey.Challenge})
	b, _ := json.Marshal(signin.LoginRequest{Presence: &p})
	req, err := http.NewRequest(http.MethodPost, w.url+"/api/login", strings.NewReader(string(b)))
	require.NoError(t, err)
	req.Header.Set("Origin", "https://breakglass.example.com")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Len(t, resp.Cookies(), 1)
	assert.Equal(t, signin.SecureCookieName, resp.Cookies()[0].Name)
	assert.True(t, resp.Cookies()[0].Secure)
}

// A sign-in the keyholder refuses sets no cookie; a forged cookie is no
// sign-in.
func TestSignInRefused(t *testing.T) {
	w := newWorld(t)
	for name, tweak := range map[string]passkey.Tweak{
		"uv-missing":     {Flags: passkey.Flags(passkey.FlagUP)},
		"foreign-origin": {Origin: "https://evil.example"},
		"bad-signature":  {BadSignature: true},
	} {
		resp, body := w.signIn(t, w.alice, tweak)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, name)
		assert.Empty(t, resp.Cookies(), name)
		var eb wire.ErrorBody
		require.NoError(t, json.Unmarshal([]byte(body), &eb))
		assert.Equal(t, wire.CodePresence, eb.Code, name)
	}
	resp, _ := w.signIn(t, passkey.New(rpID, origin))
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "an unknown passkey")
	status, _ := w.whoami(t, &http.Cookie{Name: signin.CookieName, Value: strings.Repeat("A", 43)})
	assert.Equal(t, http.StatusUnauthorized, status)
}

// The routes answer before sign-in, so a cross-site page must not drive
// them.
func TestSignInRoutesSameOriginOnly(t *testing.T) {
	w := newWorld(t)
	for _, path := range []string{"/api/login/options", "/api/login", "/api/logout", "/api/enroll/options", "/api/enroll"} {
		req, err := http.NewRequest(http.MethodPost, w.url+path, strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Sec-Fetch-Site", "cross-site")
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, path)
	}
}

// The routes share a rate limit: a burst passes, then 429.
func TestSignInRateLimited(t *testing.T) {
	w := newWorld(t)
	var limited int
	var mu sync.Mutex
	for range 40 {
		resp, _ := w.post(t, "/api/login/options", "")
		mu.Lock()
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
		mu.Unlock()
	}
	assert.Greater(t, limited, 0)
}

// Enrollment through the web: the code (from the keyholder's own log), the
// passkey, and the operators-file line back; the new passkey signs in.
func TestEnrollRelay(t *testing.T) {
	w := newWorld(t)
	resp, body := w.post(t, "/api/enroll/options", `{"name":"bob"}`)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	var opts signin.CreationOptions
	require.NoError(t, json.Unmarshal([]byte(body), &opts))
	assert.Equal(t, signin.Entity{ID: rpID, Name: "breakglass"}, opts.PublicKey.RP)
	assert.Equal(t, "required", opts.PublicKey.AuthenticatorSelection.UserVerification)
	assert.Equal(t, -7, opts.PublicKey.PubKeyCredParams[0].Alg, "ES256 first")

	bob := passkey.New(rpID, origin)
	f := bob.Create(ipc.Enrollment{EnrollmentID: opts.EnrollmentID, Challenge: opts.PublicKey.Challenge}, w.code)
	b, _ := json.Marshal(signin.EnrollRequest{EnrollmentID: opts.EnrollmentID, Code: f.Code, CredentialID: f.CredentialID, ClientDataJSON: f.ClientDataJSON, AttestationObject: f.AttestationObject})
	resp, body = w.post(t, "/api/enroll", string(b))
	require.Equal(t, http.StatusCreated, resp.StatusCode, body)
	var line ipc.EnrollmentLine
	require.NoError(t, json.Unmarshal([]byte(body), &line))
	assert.Equal(t, bob.Line("bob"), line.Line)
	assert.True(t, line.Appended)

	resp, body = w.signIn(t, bob)
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	assert.JSONEq(t, `{"operator":"bob"}`, body)

	resp, body = w.post(t, "/api/enroll/options", `{"name":"carol"}`)
	assert.Equal(t, http.StatusForbidden, resp.StatusCode, "enrollment closed after the first success: %s", body)
}

// nobodyKeyholder answers every sign-in with 200 and no operator: a
// keyholder that is broken, or a socket someone else answers.
type nobodyKeyholder struct{ signin.Keyholder }

func (nobodyKeyholder) Login(context.Context, ipc.Presence) (ipc.Login, error) {
	return ipc.Login{}, nil
}

// A sign-in answer that names no operator is no sign-in: 502 and no
// cookie, so an empty principal never reaches the operator's routes.
func TestSignInNamingNobodyIsRefused(t *testing.T) {
	svc, err := signin.New(signin.Config{Keyholder: nobodyKeyholder{}})
	require.NoError(t, err)
	r := mux.NewRouter()
	for _, rt := range svc.Routes() {
		r.HandleFunc(rt.Path, rt.Open).Methods(rt.Method)
	}
	srv := httptest.NewServer(r)
	t.Cleanup(srv.Close)
	w := &world{url: srv.URL}
	resp, body := w.post(t, "/api/login", `{"presence":{"challenge_id":"x","credential_id":"x","client_data_json":"x","authenticator_data":"x","signature":"x"}}`)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, body)
	assert.Empty(t, resp.Cookies(), "no cookie for a sign-in that names nobody")
}
