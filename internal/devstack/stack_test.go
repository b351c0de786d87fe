package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/api/wire"
	"breakglass/internal/testing/testbin"
)

// TestStartBlackholedHostDevvmDown: the options reach the binaries: with
// the Proxmox host blackholed a verb ends in its timeout (a 504 with its
// code), and the stack still serves the page.
func TestStartBlackholedHostDevvmDown(t *testing.T) {
	t.Cleanup(testbin.Cleanup)
	bin := testbin.Build(t, "breakglass/cmd/web", "breakglass/cmd/keyholder")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	s, err := Start(ctx, Config{
		Listen:       "127.0.0.1:0",
		BinDir:       bin,
		Environ:      []string{"PATH=" + os.Getenv("PATH")},
		Presence:     "off",
		PVE:          PVEBlackholed,
		DevvmDown:    true,
		APIBaseURL:   "http://127.0.0.1:9",
		KeyholderEnv: []string{"BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS=2"},
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	assert.Nil(t, s.PVE, "no simulated host")
	assert.Nil(t, s.Devvm, "no devvm")

	resp, err := http.Get(s.URL)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	start := time.Now()
	req, err := http.NewRequest(http.MethodPost, s.URL+"api/vm/status", nil)
	require.NoError(t, err)
	req.Header.Set("Origin", s.Origin)
	resp, err = http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var body wire.ErrorBody
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode, body.Error)
	assert.Equal(t, wire.CodeTimeout, body.Code)
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestConfigRefused(t *testing.T) {
	for name, cfg := range map[string]Config{
		"not-loopback": {Listen: "0.0.0.0:0"},
		"unknown-pve":  {Listen: "127.0.0.1:0", PVE: "real"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Start(t.Context(), cfg)
			assert.Error(t, err)
		})
	}
}

// TestNewRestartsEachBinary: New starts no binary; each Start* call is
// another process on fresh ports with its own extra environment (a later
// entry wins), the closed-port hosts are pinned all the same, and Close
// stops every process ever started.
func TestNewRestartsEachBinary(t *testing.T) {
	t.Cleanup(testbin.Cleanup)
	bin := testbin.Build(t, "breakglass/cmd/web", "breakglass/cmd/keyholder")
	s, err := New(Config{
		Listen:    "127.0.0.1:0",
		BinDir:    bin,
		Environ:   []string{"PATH=" + os.Getenv("PATH")},
		Presence:  "off",
		PVE:       PVEDown,
		DevvmDown: true,
	})
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	assert.Nil(t, s.PVE)
	assert.Nil(t, s.Devvm)
	assert.FileExists(t, s.KnownHosts)
	assert.NoDirExists(t, s.SocketDir, "no keyholder yet")

	assert.Equal(t, "7", lookup(s.KeyholderEnv("BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS=7"), "BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS"))
	kh, err := s.StartKeyholder(t.Context())
	require.NoError(t, err)
	assert.Contains(t, kh.Logs(), `"@message":"serving"`)

	first, err := s.StartWeb(t.Context())
	require.NoError(t, err)
	first.Kill()
	second, err := s.StartWeb(t.Context(), "BREAKGLASS_SSE_KEEPALIVE_SECONDS=3")
	require.NoError(t, err)
	assert.NotEqual(t, first.URL, second.URL)
	assert.Equal(t, second.URL, s.WebURL, "the latest web")
	resp, err := http.Get(second.URL + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)

	require.NoError(t, s.Close())
	for _, p := range []*Process{kh, first.Process, second.Process} {
		select {
		case <-p.Done():
		default:
			t.Errorf("%s still running after Close", p.name)
		}
	}
}

// ignoreTermEnv makes this test binary a child that ignores SIGTERM.
const ignoreTermEnv = "DEVSTACK_TEST_IGNORE_TERM"

func TestMain(m *testing.M) {
	if os.Getenv(ignoreTermEnv) == "1" {
		signal.Ignore(syscall.SIGTERM)
		fmt.Println(`{"@message":"ignoring SIGTERM"}`)
		select {}
	}
	os.Exit(m.Run())
}

// TestStopReportsAChildThatNeededSIGKILL: a child that ignores SIGTERM is
// killed after its grace, and Stop says so (stacktest fails the test).
func TestStopReportsAChildThatNeededSIGKILL(t *testing.T) {
	lines := make(chan string, 1)
	p, err := startProcess("stubborn", os.Args[0], []string{ignoreTermEnv + "=1"},
		Config{StopGrace: 100 * time.Millisecond}, io.Discard, func(l logLine) bool { lines <- l.Message; return true })
	require.NoError(t, err)
	assert.Equal(t, "ignoring SIGTERM", <-lines)
	err = p.Stop()
	assert.ErrorIs(t, err, errKilled)
	assert.Contains(t, p.Logs(), "ignoring SIGTERM")
}

// TestLogsKeepTheTail: a long-running stack's log copy stays bounded and
// keeps the newest lines.
func TestLogsKeepTheTail(t *testing.T) {
	p := &Process{}
	line := bytes.Repeat([]byte("x"), 1000)
	for range 2 * logTail / len(line) {
		p.keep(line)
	}
	p.keep([]byte("newest"))
	logs := p.Logs()
	assert.LessOrEqual(t, len(logs), logTail)
	assert.True(t, strings.HasSuffix(logs, "newest\n"))
}

// TestRefusedPortStaysRefused: a host that is down refuses connections,
// and its port cannot be taken by another listener while the stack holds
// it (a port merely closed could be, and another test's host would
// answer there with a key that is not pinned).
func TestRefusedPortStaysRefused(t *testing.T) {
	r, err := holdRefusedPort()
	require.NoError(t, err)
	_, err = net.Dial("tcp", r.addr)
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	_, err = net.Listen("tcp", r.addr)
	assert.ErrorIs(t, err, syscall.EADDRINUSE)
	require.NoError(t, r.Close())
	ln, err := net.Listen("tcp", r.addr)
	require.NoError(t, err, "free again once closed")
	ln.Close()
}
