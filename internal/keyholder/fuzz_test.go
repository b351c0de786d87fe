package keyholder_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/testing/passkey"
	"breakglass/internal/verbs"
)

// FuzzVerbRoute is the attack of finding any request target that makes the
// keyholder try a command other than one of the six verbs: whatever the
// target, either it is refused (4xx before any dial) or what was attempted
// is byte-for-byte a verb name. The PVE host is a closed port, so an
// attempt answers 504 at once.
func FuzzVerbRoute(f *testing.F) {
	for _, c := range badVerbs {
		if len(c.in) <= verbs.MaxLen*4 {
			f.Add("/v1/verbs/" + url.PathEscape(c.in))
		}
	}
	for _, s := range []string{
		"/v1/verbs/status", "/v1/verbs/%73tatus", "/v1/verbs/status%20", "/v1/verbs/%2e%2e%2f",
		"/v1/verbs//status", "/v1//verbs/reset", "/v1/verbs/./stop", "/v1/verbs/status?x",
		"/v1/healthz", "/metrics",
	} {
		f.Add(s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f, err)
	addr := l.Addr().String()
	require.NoError(f, l.Close())
	dir := shortDir(f)
	pvePath, _, devvmPath := newKeys(f, dir)
	host, port := hostPort(f, addr)
	kh, err := keyholder.New(keyholder.Config{
		PVE:            keyholder.Host{Host: host, Port: port, User: "root"},
		PVEKeyPath:     pvePath,
		DevVM:          keyholder.Host{Host: "127.0.0.1", Port: 2222, User: "breakglass"},
		DevVMKeyPath:   devvmPath,
		KnownHostsPath: knownHostsFor(f, dir, addr, newSigner(f).PublicKey(), false),
		VerbTimeout:    time.Second,
		Presence:       presence.ModeOff, // the route, not presence, is fuzzed here
	})
	require.NoError(f, err)
	f.Cleanup(kh.Close)
	h := kh.Handler()

	f.Fuzz(func(t *testing.T, target string) {
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http would refuse it before any handler
		}
		r := httptest.NewRequest(http.MethodPost, "http://keyholder/", strings.NewReader(""))
		r.URL = u
		r.RequestURI = target
		r = r.WithContext(ipc.WithCred(context.Background(), ipc.Cred{UID: 1, PID: 1}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusGatewayTimeout && w.Code != http.StatusBadGateway {
			return // not attempted
		}
		seg := strings.TrimPrefix(u.EscapedPath(), ipc.PathVerbPrefix)
		name, err := url.PathUnescape(seg)
		require.NoError(t, err, "attempted %q", target)
		_, err = verbs.Parse(name)
		require.NoError(t, err, "attempted %q as %q", target, name)
		require.Empty(t, u.RawQuery)
	})
}

// FuzzPresenceBody is the attack of finding a body that makes a mutating
// verb, a login or an enrollment pass without a real assertion: whatever
// the body, /v1/verbs/stop never dials the Proxmox host (a closed port:
// an attempt would answer 502 or 504), /v1/logins never answers 200, and
// nothing panics. Seeds include a correctly shaped but forged assertion.
func FuzzPresenceBody(f *testing.F) {
	alice := passkey.New(passkeyRPID, passkeyOrigin)
	forged := alice.Get(ipc.Challenge{ChallengeID: "AAAAAAAAAAAAAAAAAAAAAA", Challenge: "AAAA"})
	for _, s := range []string{
		`{}`, `{"presence":null}`, `{"presence":{}}`, `{"actor":"x","presence":{"challenge_id":""}}`,
		`{"presence":{"challenge_id":"` + forged.ChallengeID + `","credential_id":"` + forged.CredentialID +
			`","client_data_json":"` + forged.ClientDataJSON + `","authenticator_data":"` + forged.AuthenticatorData +
			`","signature":"` + forged.Signature + `"}}`,
		`{"presence":{"signature":"////"}}`, `{"presence":[1,2]}`, `{"code":"12345678","attestation_object":"oA"}`,
	} {
		f.Add(0, s)
		f.Add(1, s)
		f.Add(2, s)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(f, err)
	addr := l.Addr().String()
	require.NoError(f, l.Close())
	dir := shortDir(f)
	pvePath, _, devvmPath := newKeys(f, dir)
	host, port := hostPort(f, addr)
	kh, err := keyholder.New(keyholder.Config{
		PVE:            keyholder.Host{Host: host, Port: port, User: "root"},
		PVEKeyPath:     pvePath,
		DevVM:          keyholder.Host{Host: "127.0.0.1", Port: 2222, User: "breakglass"},
		DevVMKeyPath:   devvmPath,
		KnownHostsPath: knownHostsFor(f, dir, addr, newSigner(f).PublicKey(), false),
		VerbTimeout:    time.Second,
		RPID:           passkeyRPID,
		Origins:        []string{passkeyOrigin},
		OperatorsPath:  writeOperators(f, dir, alice.Line("alice")),
		Enroll:         true,
	})
	require.NoError(f, err)
	f.Cleanup(kh.Close)
	h := kh.Handler()
	// Live challenges, so a body naming one reaches the later checks.
	for range 4 {
		_, _, err := kh.Challenge(ipc.ChallengeRequest{Verb: "stop"})
		require.NoError(f, err)
	}

	paths := []string{ipc.PathVerbPrefix + "stop", ipc.PathLogins, ipc.PathEnrollmentPrefix + "AAAAAAAAAAAAAAAAAAAAAA"}
	f.Fuzz(func(t *testing.T, route int, body string) {
		path := paths[(route%len(paths)+len(paths))%len(paths)]
		r := httptest.NewRequest(http.MethodPost, "http://keyholder"+path, strings.NewReader(body))
		r = r.WithContext(ipc.WithCred(context.Background(), ipc.Cred{UID: 1, PID: 1}))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("%s %q answered %d: %s", path, body, w.Code, w.Body)
		}
	})
}
