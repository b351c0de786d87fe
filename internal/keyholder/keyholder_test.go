package keyholder_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/testing/pvesim"
	"breakglass/internal/verbs"
)

func TestHealthzAndVerbList(t *testing.T) {
	e := newSimEnv(t, options{})
	ctx := context.Background()
	require.NoError(t, e.client.Healthz(ctx))
	status, body := e.raw(t, "GET", "/v1/healthz", "")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"ok":true}`, body)

	status, body = e.raw(t, "GET", "/v1/verbs", "")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"vmid":102,"presence":"off","verbs":[
		{"name":"status","mutating":false},{"name":"forensics","mutating":false},
		{"name":"reset","mutating":true},{"name":"stop","mutating":true},
		{"name":"start","mutating":true},{"name":"cycle","mutating":true},
		{"name":"screenshot","mutating":false},{"name":"console","mutating":false},
		{"name":"guest","mutating":false},{"name":"tasks","mutating":false},
		{"name":"unlock","mutating":true},{"name":"guest-exec","mutating":true}]}`, body)
	vl, err := e.client.Verbs(ctx)
	require.NoError(t, err)
	assert.Equal(t, 102, vl.VMID)
	assert.Len(t, vl.Verbs, 12)
	assert.Zero(t, e.sim.Connections(), "listing verbs dials nothing")
}

// TestEachVerbReachesTheProxmoxHost runs the six verbs in a sequence that
// changes the simulated VM's state, through the socket and SSH into the real
// pve-gate logic.
func TestEachVerbReachesTheProxmoxHost(t *testing.T) {
	e := newSimEnv(t, options{})
	ctx := context.Background()
	steps := []struct {
		verb     string
		wantOut  string
		wantQM   [][]string
		wantVM   string
		nonzero  bool
		checkOut func(t *testing.T, out string)
	}{
		{verb: "status", wantOut: "status: running", wantQM: [][]string{{"qm", "status", "102", "--verbose"}}, wantVM: pvesim.Running},
		{verb: "stop", wantQM: [][]string{{"qm", "stop", "102"}}, wantVM: pvesim.Stopped},
		{verb: "status", wantOut: "status: stopped", wantVM: pvesim.Stopped},
		{verb: "start", wantQM: [][]string{{"qm", "start", "102"}}, wantVM: pvesim.Running},
		{verb: "reset", wantQM: [][]string{{"qm", "reset", "102"}}, wantVM: pvesim.Running},
		{verb: "cycle", wantVM: pvesim.Running},
		{verb: "forensics", wantOut: "qm status", wantVM: pvesim.Running},
	}
	for _, s := range steps {
		t.Run(s.verb, func(t *testing.T) {
			e.vm.ResetCalls()
			res, err := e.client.Run(ctx, s.verb, "operator:test")
			require.NoError(t, err)
			assert.Equal(t, s.verb, res.Verb)
			assert.Equal(t, 102, res.VMID)
			assert.Equal(t, 0, res.ExitCode, "output: %s", res.Output)
			assert.False(t, res.Truncated)
			assert.GreaterOrEqual(t, res.DurationMS, int64(0))
			if s.wantOut != "" {
				assert.Contains(t, res.Output, s.wantOut)
			}
			if s.wantQM != nil {
				assert.Equal(t, s.wantQM, e.vm.Calls())
			}
			assert.Equal(t, s.wantVM, e.vm.State())
		})
	}
	// cycle is stop, status until stopped, then start.
	calls := e.vm.Calls()
	assert.NotEmpty(t, calls)
}

func TestCycleRunsStopThenStart(t *testing.T) {
	e := newSimEnv(t, options{})
	res, err := e.client.Run(context.Background(), "cycle", "operator:test")
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode, res.Output)
	var verbsRun []string
	for _, c := range e.vm.Calls() {
		if c[1] != "status" {
			verbsRun = append(verbsRun, c[1])
		}
	}
	assert.Equal(t, []string{"stop", "start"}, verbsRun)
	assert.Equal(t, pvesim.Running, e.vm.State())
}

func TestNonzeroExitIsStillAnAnswer(t *testing.T) {
	e := newSimEnv(t, options{})
	// Starting a running VM fails in qm: the keyholder relays exit and output.
	res, err := e.client.Run(context.Background(), "start", "operator:test")
	require.NoError(t, err)
	assert.NotEqual(t, 0, res.ExitCode)
	assert.NotEmpty(t, res.Output)
}

func TestHostKeyMismatchRunsNothing(t *testing.T) {
	// known_hosts pins another key than the one the host presents.
	e := newSimEnv(t, options{pveHostKey: newSigner(t).PublicKey()})
	status, body := e.raw(t, "POST", "/v1/verbs/reset", `{"actor":"operator:test"}`)
	assert.Equal(t, http.StatusBadGateway, status)
	assert.Contains(t, errorOf(t, body), "host key mismatch")
	assert.Empty(t, e.vm.Calls(), "the command never ran")
	assert.Equal(t, pvesim.Running, e.vm.State())
	assert.EqualValues(t, 1, e.sim.Connections(), "the handshake was attempted once")

	_, err := e.client.Run(context.Background(), "status", "")
	assert.ErrorIs(t, err, ipc.ErrSSH)
	lines := e.log.Where(t, "@message", "request")
	require.NotEmpty(t, lines)
	assert.Equal(t, "host_key_mismatch", lines[0]["outcome"])
}

// TestRevokedHostKeyRunsNothing: the Proxmox host presents a key that
// known_hosts pins but also marks @revoked (the operator rotated it after a
// leak): the connection is refused, as OpenSSH refuses it, and nothing runs.
func TestRevokedHostKeyRunsNothing(t *testing.T) {
	e := newSimEnv(t, options{revokePVE: true})
	status, body := e.raw(t, "POST", "/v1/verbs/reset", `{"actor":"operator:test"}`)
	assert.Equal(t, http.StatusBadGateway, status, "body %s", body)
	assert.Contains(t, errorOf(t, body), "ssh to the Proxmox host failed")
	_, err := e.client.Run(context.Background(), "status", "")
	assert.ErrorIs(t, err, ipc.ErrSSH)
	assert.Empty(t, e.vm.Calls(), "the command never ran")
	assert.Equal(t, pvesim.Running, e.vm.State())
	assert.Contains(t, e.log.String(), "revoked", "the audit line says why")
}

// TestRunRefusesUnknownVerbItself: Run checks the verb on its own, whoever
// calls it (not only the HTTP handler): a refused name opens no SSH
// connection.
func TestRunRefusesUnknownVerbItself(t *testing.T) {
	e := newSimEnv(t, options{})
	bad := []string{"", "reset 103", "qm reset 102", "STATUS", "%72eset", "status\n"}
	for _, v := range bad {
		res, err := e.kh.Run(v, keyholder.Caller{Actor: "operator:test"})
		assert.ErrorIs(t, err, verbs.ErrUnknown, "verb %q", v)
		assert.Empty(t, res.Verb)
	}
	assert.Zero(t, e.sim.Connections(), "no SSH connection was opened")
	assert.Empty(t, e.vm.Calls())
	// Refused as not a verb, under the fixed label: never as a verb whose
	// body was bad, and never under a label made of the input.
	got := series(t, e, "keyholder_verbs_total")
	assert.Len(t, got, 1, "%v", got)
	if m, ok := got["invalid/refused"]; assert.True(t, ok) {
		assert.EqualValues(t, len(bad), m.GetCounter().GetValue())
	}
}

func TestUnreachableHostTimesOut(t *testing.T) {
	// A port nothing listens on: connection refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())

	dir := shortDir(t)
	pvePath, pveKey, devvmPath := newKeys(t, dir)
	e := newEnv(t, dir, pvePath, pveKey, devvmPath, options{pveAddr: addr, pveHostKey: newSigner(t).PublicKey(), timeout: 500 * time.Millisecond})
	status, body := e.raw(t, "POST", "/v1/verbs/status", "")
	assert.Equal(t, http.StatusGatewayTimeout, status)
	assert.Contains(t, errorOf(t, body), "unreachable")
}

// silentHost accepts TCP connections and never says a word.
func silentHost(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = l.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return l.Addr().String()
}

func TestSilentHostTimesOut(t *testing.T) {
	const timeout = 500 * time.Millisecond
	addr := silentHost(t)
	dir := shortDir(t)
	pvePath, pveKey, devvmPath := newKeys(t, dir)
	e := newEnv(t, dir, pvePath, pveKey, devvmPath, options{pveAddr: addr, pveHostKey: newSigner(t).PublicKey(), timeout: timeout})

	// The bound is generous: the keyholder answers at its timeout; the
	// client's context only guards against a hang failing the whole run.
	ctx, cancel := context.WithTimeout(context.Background(), timeout+4*time.Second)
	defer cancel()
	_, err := e.client.Run(ctx, "status", "operator:test")
	require.Error(t, err)
	assert.NoError(t, ctx.Err(), "the keyholder answered before the client gave up")
	assert.ErrorIs(t, err, ipc.ErrTimeout)
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se))
	assert.Equal(t, http.StatusGatewayTimeout, se.Status)
	assert.Contains(t, se.Message, "timed out")
}

func TestSlowVerbTimesOut(t *testing.T) {
	e := newSimEnv(t, options{timeout: 500 * time.Millisecond})
	release := e.vm.Block()
	defer release()
	// A few seconds over the verb timeout: without it the test fails
	// here, in seconds, rather than hang on the blocked VM.
	ctx, cancel := context.WithTimeout(context.Background(), 4500*time.Millisecond)
	defer cancel()
	_, err := e.client.Run(ctx, "status", "")
	assert.ErrorIs(t, err, ipc.ErrTimeout)
	assert.NoError(t, ctx.Err())
}

func TestSecondMutatingVerbIsBusy(t *testing.T) {
	e := newSimEnv(t, options{})
	release := e.vm.Block()
	defer release()
	type answer struct {
		res ipc.Result
		err error
	}
	first := make(chan answer, 1)
	go func() {
		res, err := e.client.Run(context.Background(), "reset", "operator:first")
		first <- answer{res, err}
	}()
	// The reset is now held inside qm on the Proxmox host.
	assert.Equal(t, []string{"qm", "reset", "102"}, <-e.vm.Waiting())
	conns := e.sim.Connections()

	for _, verb := range []string{"stop", "start", "reset", "cycle"} {
		_, err := e.client.Run(context.Background(), verb, "operator:second")
		assert.ErrorIs(t, err, ipc.ErrBusy, verb)
	}
	status, body := e.raw(t, "POST", "/v1/verbs/stop", "")
	assert.Equal(t, http.StatusConflict, status)
	assert.Contains(t, errorOf(t, body), "already running")
	assert.Equal(t, conns, e.sim.Connections(), "a busy refusal opens no SSH connection")

	release()
	a := <-first
	require.NoError(t, a.err)
	assert.Equal(t, 0, a.res.ExitCode)

	// Once it is over, the next mutating verb runs.
	res, err := e.client.Run(context.Background(), "stop", "operator:second")
	require.NoError(t, err)
	assert.Equal(t, 0, res.ExitCode)
}

func TestReadOnlyVerbRunsBesideMutatingOne(t *testing.T) {
	e := newSimEnv(t, options{})
	release := e.vm.Block()
	first := make(chan error, 1)
	go func() {
		_, err := e.client.Run(context.Background(), "reset", "operator:first")
		first <- err
	}()
	<-e.vm.Waiting()
	second := make(chan error, 1)
	go func() {
		_, err := e.client.Run(context.Background(), "status", "operator:second")
		second <- err
	}()
	// status reached qm too: it was not refused as busy.
	assert.Equal(t, []string{"qm", "status", "102", "--verbose"}, <-e.vm.Waiting())
	release()
	assert.NoError(t, <-first)
	assert.NoError(t, <-second)
}

func TestOutputOverCapIsCutAndSaysSo(t *testing.T) {
	e := newSimEnv(t, options{})
	e.vm.SetExtraOutput(3 << 20)
	res, err := e.client.Run(context.Background(), "status", "")
	require.NoError(t, err)
	assert.True(t, res.Truncated)
	assert.Contains(t, res.Output, "output truncated")
	assert.LessOrEqual(t, len(res.Output), (1<<20)+200)
	assert.Contains(t, res.Output[:4096], "status: running", "the head of the output is kept")
	assert.True(t, strings.HasSuffix(res.Output, "limit were dropped]\n"), "the cut is said at the end")
	lines := e.log.Where(t, "@message", "request")
	require.Len(t, lines, 1)
	assert.Equal(t, true, lines[0]["truncated"])
}

// TestCallerLeavingDoesNotAbandonMutatingVerb: a web that disconnects
// mid-verb does not cut a mutating verb short (nor free the slot for a
// second one while the first still runs on the host).
func TestCallerLeavingDoesNotAbandonMutatingVerb(t *testing.T) {
	e := newSimEnv(t, options{})
	release := e.vm.Block()
	defer release()
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := e.client.Run(ctx, "stop", "operator:first")
		first <- err
	}()
	<-e.vm.Waiting()
	cancel()
	assert.ErrorIs(t, <-first, context.Canceled)

	_, err := e.client.Run(context.Background(), "start", "operator:second")
	assert.ErrorIs(t, err, ipc.ErrBusy, "the first verb still runs")
	release()
}

// TestCloseEndsRunningVerb: shutting the keyholder down ends a verb held on
// the host, and later verbs are refused.
func TestCloseEndsRunningVerb(t *testing.T) {
	e := newSimEnv(t, options{})
	release := e.vm.Block()
	defer release()
	first := make(chan error, 1)
	go func() {
		_, err := e.client.Run(context.Background(), "reset", "operator:first")
		first <- err
	}()
	<-e.vm.Waiting()
	e.kh.Close()
	err := <-first
	var se *ipc.StatusError
	require.True(t, errors.As(err, &se), "%v", err)
	assert.Equal(t, http.StatusServiceUnavailable, se.Status)

	status, body := e.raw(t, "POST", "/v1/verbs/status", "")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, errorOf(t, body), "shutting down")
}
