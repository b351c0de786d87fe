package keyholder_test

import (
	"context"
	"encoding/hex"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"crypto/ed25519"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/keyholder"
)

func rawSeed(t testing.TB, raw any) []byte {
	t.Helper()
	switch k := raw.(type) {
	case *ed25519.PrivateKey:
		return k.Seed()
	case ed25519.PrivateKey:
		return k.Seed()
	}
	t.Fatalf("unexpected key type %T", raw)
	return nil
}

func hexString(b []byte) string { return hex.EncodeToString(b) }

// series returns the samples of family name in e's registry, by label set
// rendered as verb/outcome.
func series(t testing.TB, e *simEnv, name string) map[string]*dto.Metric {
	t.Helper()
	mfs, err := e.reg.Gather()
	require.NoError(t, err)
	out := map[string]*dto.Metric{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range m.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			out[labels["verb"]+"/"+labels["outcome"]] = m
		}
	}
	return out
}

func TestAuditLinePerRequest(t *testing.T) {
	e := newSimEnv(t, options{})
	ctx := context.Background()
	res, err := e.client.Run(ctx, "status", "operator:alice")
	require.NoError(t, err)
	_, _ = e.raw(t, "POST", "/v1/verbs/status%20", `{"actor":"operator:mallory"}`)
	require.NoError(t, e.client.Healthz(ctx))

	lines := e.log.Where(t, "@message", "request")
	require.Len(t, lines, 3, e.log.String())

	ran := lines[0]
	assert.Equal(t, "verb", ran["route"])
	assert.Equal(t, "status", ran["verb"])
	assert.Equal(t, "operator:alice", ran["actor"])
	assert.Equal(t, "ok", ran["outcome"])
	assert.EqualValues(t, 0, ran["exit_code"])
	assert.EqualValues(t, 200, ran["status"])
	assert.EqualValues(t, os.Getuid(), ran["uid"], "caller uid from SO_PEERCRED")
	assert.EqualValues(t, os.Getpid(), ran["pid"], "caller pid from SO_PEERCRED")
	assert.Contains(t, ran, "duration_ms")
	assert.GreaterOrEqual(t, ran["duration_ms"].(float64), float64(0))
	assert.LessOrEqual(t, ran["duration_ms"].(float64)-float64(res.DurationMS), 1000.0)

	refused := lines[1]
	assert.Equal(t, "invalid", refused["verb"])
	assert.Equal(t, "refused", refused["outcome"])
	assert.EqualValues(t, 400, refused["status"])
	assert.EqualValues(t, os.Getpid(), refused["pid"])
	assert.Equal(t, "warn", refused["@level"])
	assert.NotContains(t, refused, "exit_code")

	health := lines[2]
	assert.Equal(t, "healthz", health["route"])
	assert.EqualValues(t, os.Getuid(), health["uid"])
}

// TestAuditMutatingStartsBeforeRun: the line saying a mutating verb starts
// is already written while the verb is held inside qm on the Proxmox host.
func TestAuditMutatingStartsBeforeRun(t *testing.T) {
	e := newSimEnv(t, options{})
	release := e.vm.Block()
	defer release()
	done := make(chan error, 1)
	go func() {
		_, err := e.client.Run(context.Background(), "stop", "operator:alice")
		done <- err
	}()
	<-e.vm.Waiting()
	starts := e.log.Where(t, "@message", "mutating verb starts")
	require.Len(t, starts, 1)
	assert.Equal(t, "stop", starts[0]["verb"])
	assert.Equal(t, "operator:alice", starts[0]["actor"])
	assert.EqualValues(t, os.Getuid(), starts[0]["uid"])
	assert.EqualValues(t, os.Getpid(), starts[0]["pid"])
	assert.Empty(t, e.log.Where(t, "@message", "request"), "the request's own line comes at its end")

	release()
	require.NoError(t, <-done)
	lines := e.log.Where(t, "@message", "request")
	require.Len(t, lines, 1)
	assert.Equal(t, "stop", lines[0]["verb"])

	// A read-only verb gets no start line.
	_, err := e.client.Run(context.Background(), "status", "operator:alice")
	require.NoError(t, err)
	assert.Len(t, e.log.Where(t, "@message", "mutating verb starts"), 1)
}

func TestMetrics(t *testing.T) {
	e := newSimEnv(t, options{})
	ctx := context.Background()
	_, err := e.client.Run(ctx, "status", "operator:test")
	require.NoError(t, err)
	_, err = e.client.Run(ctx, "start", "operator:test") // already running: qm fails
	require.NoError(t, err)
	_, _ = e.raw(t, "POST", "/v1/verbs/STATUS", "")
	_, _ = e.raw(t, "POST", "/v1/verbs/reset", `{"bad":1}`)

	want := `
# HELP keyholder_verbs_total Verb requests on keyholder.sock, by verb and outcome.
# TYPE keyholder_verbs_total counter
keyholder_verbs_total{outcome="bad_request",verb="reset"} 1
keyholder_verbs_total{outcome="nonzero_exit",verb="start"} 1
keyholder_verbs_total{outcome="ok",verb="status"} 1
keyholder_verbs_total{outcome="refused",verb="invalid"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(e.reg, strings.NewReader(want), "keyholder_verbs_total"))
	durations := series(t, e, "keyholder_verb_duration_seconds")
	assert.Len(t, durations, 2, "one duration series per verb that ran")
	assert.EqualValues(t, 1, durations["status/"].GetHistogram().GetSampleCount())

	// The same, as Prometheus text over the socket.
	body, ctype, err := e.client.Metrics(ctx)
	require.NoError(t, err)
	assert.Contains(t, ctype, "text/plain")
	assert.Contains(t, string(body), `keyholder_verbs_total{outcome="ok",verb="status"} 1`)
	assert.Contains(t, string(body), `keyholder_verb_duration_seconds_count{verb="status"} 1`)
}

// Attack: ask for a verb and never read the answer, so its outcome (exit
// code, truncation) never reaches the audit log while the connection stays
// open. The answer has its own timeout; the line is written after it.
func TestAuditLineWhenCallerStopsReading(t *testing.T) {
	e := newSimEnv(t, options{})
	keyholder.SetAnswerTimeout(e.kh, 100*time.Millisecond)
	e.vm.SetExtraOutput(3 << 20) // an answer far larger than the socket buffers
	c, err := net.Dial("unix", e.socket)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /v1/verbs/status HTTP/1.1\r\nHost: keyholder\r\nContent-Length: 0\r\n\r\n")
	require.NoError(t, err)
	// Nothing is ever read from c.
	lines := e.log.WaitFor(t, "@message", "request", 15*time.Second)
	require.Len(t, lines, 1)
	assert.Equal(t, "status", lines[0]["verb"])
	assert.Equal(t, "ok", lines[0]["outcome"])
	assert.Equal(t, true, lines[0]["truncated"])
}
