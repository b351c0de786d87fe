package ipc_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/internal/ipc"
	"breakglass/internal/verbs"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// shortDir returns a directory whose socket paths fit in 108 bytes.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "ipc")
	require.NoError(t, err)
	t.Cleanup(func() { _ = os.RemoveAll(d) })
	return d
}

// serve runs h on a new socket in dir until the test ends.
func serve(t *testing.T, path string, h http.Handler) {
	t.Helper()
	l, err := ipc.Listen(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ipc.Serve(ctx, l, ipc.ServerConfig{Handler: h, ShutdownTimeout: time.Second}) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func TestListenSocketMode(t *testing.T) {
	dir := filepath.Join(shortDir(t), "made", "here")
	path := filepath.Join(dir, ipc.SocketName)
	l, err := ipc.Listen(path)
	require.NoError(t, err)
	info, err := os.Lstat(path)
	require.NoError(t, err)
	assert.Equal(t, fs.ModeSocket, info.Mode().Type())
	assert.Equal(t, fs.FileMode(0o660), info.Mode().Perm())
	dinfo, err := os.Stat(dir)
	require.NoError(t, err)
	assert.True(t, dinfo.IsDir(), "the directory was created")
	assert.Zero(t, dinfo.Mode().Perm()&0o007, "the directory is not open to others")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "no temporary name left behind")
	assert.Equal(t, path, l.Addr().String())

	require.NoError(t, l.Close())
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, fs.ErrNotExist, "Close removes the socket")
	assert.NoError(t, l.Close(), "Close twice is fine")
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	// A socket file nobody listens on, as a killed keyholder leaves it.
	stale, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	require.NoError(t, err)
	stale.SetUnlinkOnClose(false)
	require.NoError(t, stale.Close())
	_, err = os.Lstat(path)
	require.NoError(t, err, "the stale socket file is there")

	l, err := ipc.Listen(path)
	require.NoError(t, err)
	defer l.Close()
	c, err := net.Dial("unix", path)
	require.NoError(t, err, "the new socket answers")
	require.NoError(t, c.Close())
}

// TestListenRefusesLiveSocket is the attack of a second process taking over
// a running keyholder's socket name.
func TestListenRefusesLiveSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	l, err := ipc.Listen(path)
	require.NoError(t, err)
	defer l.Close()
	_, err = ipc.Listen(path)
	assert.ErrorIs(t, err, ipc.ErrInUse)
}

// TestListenNeverRemovesOtherFiles is the attack of pointing the socket path
// at a file the keyholder would delete.
func TestListenNeverRemovesOtherFiles(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	require.NoError(t, os.WriteFile(path, []byte("precious"), 0o600))
	_, err := ipc.Listen(path)
	assert.ErrorIs(t, err, ipc.ErrNotSocket)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, "precious", string(b))
}

func TestCloseLeavesSuccessorSocket(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	first, err := ipc.Listen(path)
	require.NoError(t, err)
	// Someone replaced the socket file under the first listener.
	require.NoError(t, os.Remove(path))
	second, err := ipc.Listen(path)
	require.NoError(t, err)
	defer second.Close()
	require.NoError(t, first.Close())
	_, err = os.Lstat(path)
	assert.NoError(t, err, "the first listener's Close left the second's socket")
}

func TestPeerCredReachesHandler(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	got := make(chan ipc.Cred, 1)
	serve(t, path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cred, ok := ipc.PeerCred(r.Context())
		if ok {
			got <- cred
		}
		_ = json.NewEncoder(w).Encode(ipc.Health{OK: ok})
	}))
	c := ipc.NewClient(path)
	defer c.Close()
	require.NoError(t, c.Healthz(context.Background()))
	cred := <-got
	assert.EqualValues(t, os.Getuid(), cred.UID)
	assert.EqualValues(t, os.Getgid(), cred.GID)
	assert.EqualValues(t, os.Getpid(), cred.PID)
	_, ok := ipc.PeerCred(context.Background())
	assert.False(t, ok, "no credentials outside Serve")
}

func TestClientErrors(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	var calls atomic.Int32
	status := map[string]int{"status": 400, "reset": 409, "stop": 502, "start": 504, "cycle": 503}
	serve(t, path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		verb := filepath.Base(r.URL.Path)
		w.WriteHeader(status[verb])
		_ = json.NewEncoder(w).Encode(ipc.ErrorBody{Error: "no " + verb})
	}))
	c := ipc.NewClient(path)
	defer c.Close()
	ctx := context.Background()
	cases := []struct {
		verb string
		want error
	}{
		{"status", ipc.ErrBadVerb},
		{"reset", ipc.ErrBusy},
		{"stop", ipc.ErrSSH},
		{"start", ipc.ErrTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.verb, func(t *testing.T) {
			_, err := c.Run(ctx, tc.verb, "operator:test")
			assert.ErrorIs(t, err, tc.want)
			var se *ipc.StatusError
			require.True(t, errors.As(err, &se))
			assert.Equal(t, status[tc.verb], se.Status)
			assert.Equal(t, "no "+tc.verb, se.Message)
		})
	}
	_, err := c.Run(ctx, "cycle", "")
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se))
	assert.Equal(t, 503, se.Status)
	for _, s := range []error{ipc.ErrBadVerb, ipc.ErrBusy, ipc.ErrSSH, ipc.ErrTimeout} {
		assert.NotErrorIs(t, err, s)
	}

	before := calls.Load()
	_, err = c.Run(ctx, "status;reboot", "")
	assert.ErrorIs(t, err, verbs.ErrUnknown)
	assert.Equal(t, before, calls.Load(), "a bad verb is refused before any I/O")
}

func TestClientUnreachable(t *testing.T) {
	c := ipc.NewClient(filepath.Join(shortDir(t), "nobody.sock"))
	defer c.Close()
	ctx := context.Background()
	assert.ErrorIs(t, c.Healthz(ctx), ipc.ErrUnreachable)
	_, err := c.Verbs(ctx)
	assert.ErrorIs(t, err, ipc.ErrUnreachable)
	_, err = c.Run(ctx, "status", "")
	assert.ErrorIs(t, err, ipc.ErrUnreachable)
	_, _, err = c.Metrics(ctx)
	assert.ErrorIs(t, err, ipc.ErrUnreachable)
}

func TestClientRefusesOversizedAnswer(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	serve(t, path, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(make([]byte, 1<<20)) // far over the small-answer bound
	}))
	c := ipc.NewClient(path)
	defer c.Close()
	_, err := c.Verbs(context.Background())
	assert.ErrorContains(t, err, "longer than")
}

func TestServeRemovesSocketOnShutdown(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	l, err := ipc.Listen(path)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ipc.Serve(ctx, l, ipc.ServerConfig{Handler: http.NotFoundHandler()})
	}()
	c := ipc.NewClient(path)
	defer c.Close()
	assert.Error(t, c.Healthz(context.Background()), "404 is not healthy") // proves it serves
	cancel()
	require.NoError(t, <-done)
	_, err = os.Lstat(path)
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// TestServeCapsConnections is the attack of opening connections by the
// thousand and sending nothing, to exhaust the keyholder's memory or its
// file descriptors: past MaxConnections a connection is closed at once,
// unread and unanswered, and counted; a place comes back when a
// connection closes.
func TestServeCapsConnections(t *testing.T) {
	path := filepath.Join(shortDir(t), ipc.SocketName)
	l, err := ipc.Listen(path)
	require.NoError(t, err)
	refused := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- ipc.Serve(ctx, l, ipc.ServerConfig{
			Handler:         http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") }),
			ShutdownTimeout: time.Second,
			MaxConnections:  2,
			OnRefused: func() {
				select { // never block the accept loop
				case refused <- struct{}{}:
				default:
				}
			},
		})
	}()
	t.Cleanup(func() {
		cancel()
		select { // bounded: a broken cap fails the test, never hangs it
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(5 * time.Second):
			t.Error("Serve did not return")
		}
	})

	// Two stalled connections take both places (the kernel hands
	// connections to Accept in the order they came).
	var stalled []net.Conn
	for range 2 {
		c, err := net.Dial("unix", path)
		require.NoError(t, err)
		stalled = append(stalled, c)
	}
	defer func() {
		for _, c := range stalled {
			_ = c.Close()
		}
	}()
	status, err := get(path)
	require.Error(t, err, "the third connection is closed unanswered, got %d", status)
	select {
	case <-refused:
	case <-time.After(5 * time.Second):
		t.Fatal("the refused connection was not counted")
	}

	require.NoError(t, stalled[0].Close())
	assert.Eventually(t, func() bool {
		status, err := get(path)
		return err == nil && status == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond, "a closed connection gives its place back")
}

// get sends one GET over a fresh connection and returns the status; an
// error when the connection closes without an answer. It never waits more
// than a few seconds.
func get(path string) (int, error) {
	c, err := net.Dial("unix", path)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(3 * time.Second)); err != nil {
		return 0, err
	}
	if _, err := io.WriteString(c, "GET /v1/healthz HTTP/1.1\r\nHost: keyholder\r\nConnection: close\r\n\r\n"); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return 0, err
	}
	_ = resp.Body.Close()
	return resp.StatusCode, nil
}
