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
