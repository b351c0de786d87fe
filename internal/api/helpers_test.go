package api

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/session"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// fakeRunner runs turns with a script.
type fakeRunner struct {
	script func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome
}

func (f *fakeRunner) Run(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	return f.script(ctx, t, emit)
}

func quickTurn(_ context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID, Model: "sonnet"}))
	emit(event.New(event.Text, event.TextData{Delta: "hi"}))
	emit(event.New(event.Result, event.ResultData{Subtype: "success", Text: "hi"}))
	return claude.Outcome{Outcome: event.OutcomeSuccess}
}

// blockTurn runs until cancelled, after telling started.
func blockTurn(started chan<- string) func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	return func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
		emit(event.New(event.Session, event.SessionData{SessionID: t.SessionID}))
		started <- t.SessionID
		<-ctx.Done()
		if errors.Is(context.Cause(ctx), claude.ErrCancelled) {
			return claude.Outcome{Outcome: event.OutcomeCancelled}
		}
		return claude.Outcome{Outcome: event.OutcomeTimeout, ExitCode: -1}
	}
}

// fakeKeyholder answers the probes and metrics.
type fakeKeyholder struct {
	mu      sync.Mutex
	down    bool
	metrics string
}

func (k *fakeKeyholder) setDown(down bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.down = down
}

func (k *fakeKeyholder) Healthz(context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return errors.New("dial unix keyholder.sock: connection refused")
	}
	return nil
}

func (k *fakeKeyholder) Metrics(context.Context) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.down {
		return nil, errors.New("dial unix keyholder.sock: connection refused")
	}
	return []byte(k.metrics), nil
}

// env is a Server on a loopback listener with its manager.
type env struct {
	url      string
	srv      *Server
	sessions *session.Manager
	kh       *fakeKeyholder
	reg      *prometheus.Registry
	dir      string
	client   *http.Client
}

type opts struct {
	runner   session.Runner
	maxTurns int
	api      Config
}

func start(t *testing.T, o opts) *env {
	t.Helper()
	return startTB(t, o)
}

// startTB is start for tests and benchmarks.
func startTB(t testing.TB, o opts) *env {
	t.Helper()
	if o.runner == nil {
		o.runner = &fakeRunner{script: quickTurn}
	}
	reg := prometheus.NewPedanticRegistry()
	dir := t.TempDir()
	m, err := session.New(session.Config{Dir: dir + "/sessions", Runner: o.runner, MaxConcurrentTurns: o.maxTurns, Registerer: reg})
	require.NoError(t, err)
	kh := &fakeKeyholder{metrics: "# TYPE keyholder_verbs_total counter\nkeyholder_verbs_total{verb=\"status\",outcome=\"success\"} 3\n# TYPE go_goroutines gauge\ngo_goroutines 7\n"}
	cfg := o.api
	if cfg.TrustedProxies == nil {
		// The tests' client stands in for the edge proxy, on loopback.
		// An empty, non-nil list stays empty: the default, header off.
		cfg.TrustedProxies = mustPrefixes("127.0.0.0/8", "::1/128")
	}
	cfg.Sessions = m
	cfg.Keyholder = kh
	cfg.Registerer = reg
	cfg.Gatherer = reg
	s, err := New(cfg)
	require.NoError(t, err)
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(func() {
		require.NoError(t, m.Close())
		hs.CloseClientConnections()
		hs.Close()
	})
	return &env{url: hs.URL, srv: s, sessions: m, kh: kh, reg: reg, dir: dir, client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 200}}}
}

// req sends a request as the operator "alice" through a trusted proxy,
// unless headers say otherwise (a nil value removes a header).
func (e *env) req(t *testing.T, method, path, body string, headers map[string][]string) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, e.url+path, rd)
	require.NoError(t, err)
	r.Header.Set(IdentityHeader, "alice")
	if body != "" {
		r.Header.Set("Content-Type", "application/json")
	}
	for k, v := range headers {
		r.Header.Del(k)
		for _, x := range v {
			r.Header.Add(k, x)
		}
	}
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

// create makes a session over HTTP and returns its id.
func (e *env) create(t *testing.T) string {
	t.Helper()
	id, err := e.sessions.Create()
	require.NoError(t, err)
	return id.ID
}

// sseEvent is one parsed SSE event.
type sseEvent struct {
	id   int64
	typ  string
	data string
}

// sseReader parses an SSE response body.
type sseReader struct {
	br *bufio.Reader

	mu         sync.Mutex
	keepalives int
}

// next returns the next event, counting keepalive comments on the way.
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	seen := false
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return ev, err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if seen {
				return ev, nil
			}
		case strings.HasPrefix(line, ":"):
			s.mu.Lock()
			s.keepalives++
			s.mu.Unlock()
		case strings.HasPrefix(line, "id: "):
			ev.id, err = strconv.ParseInt(line[4:], 10, 64)
			if err != nil {
				return ev, err
			}
			seen = true
		case strings.HasPrefix(line, "event: "):
			ev.typ = line[7:]
			seen = true
		case strings.HasPrefix(line, "data: "):
			ev.data = line[6:]
			seen = true
		}
	}
}

// attach opens the stream of id with a Last-Event-ID header when last >= 0.
func (e *env) attach(t *testing.T, ctx context.Context, id string, last int64) (*http.Response, *sseReader) {
	t.Helper()
	r, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/sessions/"+id+"/stream", nil)
	require.NoError(t, err)
	r.Header.Set(IdentityHeader, "alice")
	if last >= 0 {
		r.Header.Set("Last-Event-ID", strconv.FormatInt(last, 10))
	}
	resp, err := http.DefaultClient.Do(r)
	require.NoError(t, err)
	t.Cleanup(func() { resp.Body.Close() })
	return resp, &sseReader{br: bufio.NewReader(resp.Body)}
}

// readUntilDone reads events until a done one, bounded in time by ctx.
func readUntilDone(t *testing.T, rd *sseReader) []sseEvent {
	t.Helper()
	var got []sseEvent
	for {
		ev, err := rd.next()
		require.NoError(t, err, "stream ended after %d events", len(got))
		got = append(got, ev)
		if ev.typ == string(event.Done) {
			return got
		}
	}
}

func withTimeout(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newBufReader(resp *http.Response) *bufio.Reader { return bufio.NewReader(resp.Body) }

// keepalivesOf reads the keepalive count the reading goroutine updates.
func keepalivesOf(rd *sseReader) int {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	return rd.keepalives
}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func newBufReaderFrom(r io.Reader) *bufio.Reader { return bufio.NewReaderSize(r, 64<<10) }

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// subscribers is breakglass_sse_subscribers now.
func subscribers(e *env) int {
	fams, err := e.reg.Gather()
	if err != nil {
		return -1
	}
	for _, f := range fams {
		if f.GetName() == "breakglass_sse_subscribers" {
			return int(f.GetMetric()[0].GetGauge().GetValue())
		}
	}
	return -1
}
