package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/ipc"
	"breakglass/internal/testing/pvesim"
)

// Stalled connections of TestBinaryStalledConnectionsBounded; the soak
// (BREAKGLASS_SOAK=1, make soak) holds three times as many (15,000 file
// descriptors in the test process).
const (
	stalledVerbConns  = 4000
	stalledAgentConns = 1000
	// maxStalledRSS is the keyholder's resident memory bound under them;
	// its Kubernetes limit is 128 Mi.
	maxStalledRSS = 48 << 20
)

// TestBinaryStalledConnectionsBounded is the attack of opening thousands of
// connections to keyholder.sock and agent.sock and leaving each half a
// request, to run the keyholder (and the verbs and logins it holds) into
// its memory limit. Past each socket's cap a connection is closed at once
// and counted, so the keyholder's peak resident memory stays under
// maxStalledRSS, and once the callers let go it answers status again.
func TestBinaryStalledConnectionsBounded(t *testing.T) {
	verb, agent := stalledVerbConns, stalledAgentConns
	if os.Getenv("BREAKGLASS_SOAK") == "1" {
		verb, agent = 3*verb, 3*agent
	}
	before, peak := stalledKeyholder(t, verb, agent)
	t.Logf("keyholder resident memory: %d KiB before, peak %d KiB with %d stalled connections",
		before>>10, peak>>10, verb+agent)
	assert.Less(t, peak, int64(maxStalledRSS), "peak resident memory under the stalled connections")
}

// BenchmarkStalledConnections is TestBinaryStalledConnectionsBounded's
// figure for make bench: the keyholder's peak resident memory (MiB) with
// 4,000 stalled connections on keyholder.sock and 1,000 on agent.sock.
func BenchmarkStalledConnections(b *testing.B) {
	var peak int64
	for range b.N {
		_, peak = stalledKeyholder(b, stalledVerbConns, stalledAgentConns)
	}
	b.ReportMetric(float64(peak)/(1<<20), "hwm_MiB")
}

// stalledKeyholder starts the keyholder binary in front of a simulated
// Proxmox host, stalls verbConns connections on keyholder.sock (half a
// request's headers each) and agentConns on agent.sock (a frame announced,
// never sent), and returns its resident memory before and its peak with
// them. It then lets them go and checks that status answers and that the
// refused connections were counted.
func stalledKeyholder(t testing.TB, verbConns, agentConns int) (before, peak int64) {
	t.Helper()
	f := newFixture(t)
	_, hostPriv, err := ed25519.GenerateKey(rand.Reader)
	require.NoError(t, err)
	hostKey, err := ssh.NewSignerFromKey(hostPriv)
	require.NoError(t, err)
	sim, err := pvesim.Start(pvesim.Config{VM: pvesim.NewVM(102), AuthorizedKey: f.pvePub, HostKey: hostKey})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sim.Close() })
	// Point the PVE host at the simulated one and pin its key.
	host, port, err := net.SplitHostPort(sim.Addr)
	require.NoError(t, err)
	f.env[envPVEHost], f.env[envPVEPort] = host, port
	kh, err := os.OpenFile(f.env[envKnownHosts], os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = kh.WriteString(sim.KnownHostsLine() + "\n")
	require.NoError(t, err)
	require.NoError(t, kh.Close())

	cmd, stderr := f.start(t)
	drained := waitServing(t, stderr)
	before = rss(t, cmd.Process.Pid, "VmRSS")

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	stall := func(path string, n int, partial string) {
		for range n {
			c, err := dialBusy(path)
			require.NoError(t, err)
			conns = append(conns, c)
			// A write to a connection the keyholder already closed may
			// fail; that is the cap at work.
			_ = c.SetWriteDeadline(time.Now().Add(time.Second))
			_, _ = c.Write([]byte(partial))
		}
	}
	stall(f.socket(), verbConns, "POST /v1/verbs/status HTTP/1.1\r\nHost: keyholder\r\nContent-Le")
	stall(f.agentSocket(), agentConns, "\x00\x03\xff\xff") // a 256 KiB frame announced, never sent
	peak = rss(t, cmd.Process.Pid, "VmHWM")

	for _, c := range conns {
		_ = c.Close()
	}
	conns = nil
	c := ipc.NewClient(f.socket())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Places come back as the keyholder reads each closed connection's end.
	require.Eventually(t, func() bool { return c.Healthz(ctx) == nil }, 10*time.Second, 20*time.Millisecond)
	res, err := c.Run(ctx, "status", "operator:test")
	require.NoError(t, err, "status answers once the callers let go")
	assert.Contains(t, res.Output, "status: running")

	metrics, _, err := c.Metrics(ctx)
	require.NoError(t, err)
	// Every connection past a cap is refused, except where an earlier one
	// was closed by its read timeout first and freed its place: on a loaded
	// machine dialing thousands takes longer than that timeout. Without
	// the caps none would be refused.
	assert.Greater(t, counter(t, string(metrics), "keyholder_connections_refused_total"), float64(verbConns/2))
	assert.Greater(t, counter(t, string(metrics), `keyholder_agent_refused_total{request="connection"}`), float64(agentConns/2))

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	<-drained
	require.NoError(t, cmd.Wait())
	return before, peak
}

// dialBusy connects to the Unix socket at path. A full listen backlog (the
// keyholder accepting more slowly than the test connects, on a loaded
// machine) answers EAGAIN at once: wait a little and try again, for at most
// a few seconds.
func dialBusy(path string) (net.Conn, error) {
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := net.Dial("unix", path)
		if err == nil || !errors.Is(err, syscall.EAGAIN) || time.Now().After(deadline) {
			return c, err
		}
		time.Sleep(time.Millisecond)
	}
}

// rss reads a memory field (VmRSS, VmHWM) of pid in bytes.
func rss(t testing.TB, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			require.NoError(t, err)
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// counter returns the value of the series named exactly series (name and
// labels) in Prometheus text.
func counter(t testing.TB, text, series string) float64 {
	t.Helper()
	for _, line := range strings.Split(text, "\n") {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			require.NoError(t, err)
			return v
		}
	}
	t.Fatalf("no series %s in:\n%s", series, text)
	return 0
}
