package main

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
)

// slowlorisWithin is how long a listener may keep a client that never
// finishes its headers: the read-header timeout and some slack for a
// loaded machine.
const slowlorisWithin = readHeaderTimeout + 10*time.Second

// slowloris opens a connection, sends the start of a request that never
// ends, and fails t unless the server closes it within d. It returns what
// the server sent before closing.
func slowloris(t *testing.T, network, addr string, d time.Duration) string {
	t.Helper()
	c, err := net.Dial(network, addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "GET /healthz HTTP/1.1\r\nHost: breakglass\r\nX-Slow: ")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(d)))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s %s kept a client that never finished its headers for more than %v", network, addr, d)
	}
	return string(b)
}

// TestSlowlorisOnEveryWebListener is the slowloris attack on the built web
// binary: a client that starts a request and never finishes its headers
// is disconnected by the read-header timeout, on the operator's listener
// and on the metrics listener alike, and the listener keeps serving.
func TestSlowlorisOnEveryWebListener(t *testing.T) {
	t.Parallel()
	w := newStack(t).StartWeb(t)
	for _, l := range []struct{ name, url, path string }{
		{"operator", w.URL, "/healthz"},
		{"metrics", strings.TrimSuffix(w.MetricsURL, "/metrics"), "/metrics"},
	} {
		t.Run(l.name, func(t *testing.T) {
			t.Parallel()
			slowloris(t, "tcp", strings.TrimPrefix(l.url, "http://"), slowlorisWithin)
			resp, err := w.Client.Get(l.url + l.path)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
		})
	}
}

// TestSlowlorisOnKeyholderSocket is the same attack on keyholder.sock, with
// the server configuration cmd/keyholder uses (a handler and a logger, every
// limit at ipc's default): the socket is reachable from the web container,
// so a compromised web must not be able to pin its connections either.
func TestSlowlorisOnKeyholderSocket(t *testing.T) {
	t.Parallel()
	dir, err := os.MkdirTemp("", "bg-slow")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	ln, err := ipc.Listen(filepath.Join(dir, ipc.SocketName))
	require.NoError(t, err)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, `{"ok":true}`) })
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- ipc.Serve(ctx, ln, ipc.ServerConfig{Handler: mux, Logger: hclog.NewNullLogger()})
	}()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-served)
	})

	slowloris(t, "unix", filepath.Join(dir, ipc.SocketName), ipc.DefaultReadTimeout+10*time.Second)
	c := ipc.NewClient(filepath.Join(dir, ipc.SocketName))
	defer c.Close()
	require.NoError(t, c.Healthz(context.Background()), "the socket still serves after the slow client")
}
