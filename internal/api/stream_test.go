package api

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
)

// gatedTurn emits n text events, waiting for a token on gate before each.
func gatedTurn(n int, gate <-chan struct{}) func(ctx context.Context, t claude.Turn, emit func(event.Event)) claude.Outcome {
	return func(ctx context.Context, _ claude.Turn, emit func(event.Event)) claude.Outcome {
		for i := 0; i < n; i++ {
			select {
			case <-gate:
			case <-ctx.Done():
				return claude.Outcome{Outcome: event.OutcomeCancelled}
			}
			emit(event.New(event.Text, event.TextData{Delta: fmt.Sprint(i)}))
		}
		return claude.Outcome{Outcome: event.OutcomeSuccess}
	}
}

func TestStreamLastEventID(t *testing.T) {
	gate := make(chan struct{})
	e := start(t, opts{runner: &fakeRunner{script: gatedTurn(6, gate)}})
	id := e.create(t)
	resp, body := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"go"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode, body)
	for i := 0; i < 3; i++ {
		gate <- struct{}{}
	}
	// The log holds user + 3 texts; the third text is in it once the
	// fourth token is taken.
	gate <- struct{}{}

	ctx := withTimeout(t)
	for _, mode := range []string{"header", "query"} {
		t.Run(mode, func(t *testing.T) {
			var resp *http.Response
			var rd *sseReader
			if mode == "header" {
				resp, rd = e.attach(t, ctx, id, 2)
			} else {
				r, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/sessions/"+id+"/stream?last_event_id=2", nil)
				require.NoError(t, err)
				r.Header.Set(IdentityHeader, "alice")
				resp, err = http.DefaultClient.Do(r)
				require.NoError(t, err)
				defer resp.Body.Close()
				rd = &sseReader{br: newBufReader(resp)}
			}
			require.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
			assert.Equal(t, "no-cache", resp.Header.Get("Cache-Control"))
			assert.Equal(t, "no", resp.Header.Get("X-Accel-Buffering"))
			for want := int64(3); want <= 5; want++ {
				ev, err := rd.next()
				require.NoError(t, err)
				assert.Equal(t, want, ev.id, "exactly the events after 2")
				assert.Equal(t, "text", ev.typ)
			}
		})
	}
	// Live: a fresh attach at the end gets what comes next.
	_, rd := e.attach(t, ctx, id, 5)
	go func() {
		gate <- struct{}{}
		gate <- struct{}{}
	}()
	got := readUntilDone(t, rd)
	require.Len(t, got, 3)
	assert.Equal(t, []int64{6, 7, 8}, []int64{got[0].id, got[1].id, got[2].id})
	assert.Equal(t, `{"delta":"4"}`, got[0].data)
}

func TestStreamBadCursor(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	for _, v := range []string{"abc", "-1", "1.5", "+3", "99999999999999999999", "0x1"} {
		t.Run(v, func(t *testing.T) {
			resp, body := e.req(t, http.MethodGet, "/api/sessions/"+id+"/stream", "", map[string][]string{"Last-Event-ID": {v}})
			assert.Equal(t, http.StatusBadRequest, resp.StatusCode, body)
		})
	}
	resp, _ := e.req(t, http.MethodGet, "/api/sessions/"+id+"/stream?last_event_id=x", "", nil)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}

func TestStreamKeepalive(t *testing.T) {
	e := start(t, opts{api: Config{KeepAlive: 10 * time.Millisecond}})
	id := e.create(t)
	ctx, cancel := context.WithCancel(withTimeout(t))
	_, rd := e.attach(t, ctx, id, -1)
	go func() {
		// Nothing is ever appended: the reader only sees comments until
		// the context ends.
		_, _ = rd.next()
	}()
	require.Eventually(t, func() bool { return keepalivesOf(rd) >= 2 }, 10*time.Second, 5*time.Millisecond)
	cancel()
}

// TestTurnRunsWithoutClient: nobody attached while the turn ran; a client
// attaching afterwards gets all of it.
func TestTurnRunsWithoutClient(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"go"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.Eventually(t, func() bool {
		info, err := e.sessions.Get(id)
		return err == nil && info.State == "idle"
	}, 10*time.Second, 5*time.Millisecond)
	_, rd := e.attach(t, withTimeout(t), id, -1)
	got := readUntilDone(t, rd)
	var types []string
	for _, ev := range got {
		types = append(types, ev.typ)
	}
	assert.Equal(t, []string{"user", "session", "text", "result", "done"}, types)
}

// TestStreamReconnectNoGapNoDuplicate disconnects an HTTP client at 50
// random points of a long streamed turn and reconnects with Last-Event-ID,
// the way EventSource does: the union of what it saw is the log, in order,
// with no gap and no duplicate.
func TestStreamReconnectNoGapNoDuplicate(t *testing.T) {
	const n = 3000
	gate := make(chan struct{})
	e := start(t, opts{runner: &fakeRunner{script: gatedTurn(n, gate)}})
	id := e.create(t)
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"go"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)

	// The turn streams on its own, as fast as the test lets it.
	stop := make(chan struct{})
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		for i := 0; i < n; i++ {
			select {
			case gate <- struct{}{}:
			case <-stop:
				return
			}
		}
	}()
	defer func() { close(stop); <-fed }()

	rng := rand.New(rand.NewPCG(4, 2))
	cuts := map[int]bool{}
	for len(cuts) < 50 {
		cuts[rng.IntN(n)+1] = true
	}
	var seen []int64
	last := int64(0)
	for done := false; !done; {
		ctx, cancel := context.WithCancel(withTimeout(t))
		_, rd := e.attach(t, ctx, id, last)
		for {
			ev, err := rd.next()
			require.NoError(t, err)
			seen = append(seen, ev.id)
			last = ev.id
			if ev.typ == "done" {
				done = true
				break
			}
			if cuts[len(seen)] {
				break
			}
		}
		cancel()
	}
	require.Len(t, seen, n+2)
	for i, id := range seen {
		require.Equal(t, int64(i+1), id, "gap or duplicate at %d", i)
	}
}
