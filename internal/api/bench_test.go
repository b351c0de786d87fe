package api

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
)

// percentile returns the p-th percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted)-1) * p)
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// BenchmarkFanout100 measures one event delivered to 100 clients attached
// over SSE on loopback: the latency from Append to each client parsing it.
func BenchmarkFanout100(b *testing.B) {
	const clients = 100
	e := startTB(b, opts{})
	id, err := e.sessions.Create()
	require.NoError(b, err)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type delivery struct {
		id int64
		at time.Time
	}
	got := make(chan delivery, clients*4)
	var wg sync.WaitGroup
	ready := make(chan struct{}, clients)
	for i := 0; i < clients; i++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.url+"/api/sessions/"+id.ID+"/stream", nil)
		require.NoError(b, err)
		req.Header.Set(IdentityHeader, "alice")
		resp, err := e.client.Do(req)
		require.NoError(b, err)
		require.Equal(b, http.StatusOK, resp.StatusCode)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer resp.Body.Close()
			rd := &sseReader{br: newBufReader(resp)}
			ready <- struct{}{}
			for {
				ev, err := rd.next()
				if err != nil {
					return
				}
				got <- delivery{ev.id, time.Now()}
			}
		}()
	}
	for i := 0; i < clients; i++ {
		<-ready
	}
	// Every stream is registered once the session counts its subscribers.
	require.Eventually(b, func() bool { return subscribers(e) == clients }, 10*time.Second, time.Millisecond)

	lat := make([]time.Duration, 0, b.N*clients)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		require.NoError(b, e.sessions.Append(id.ID, event.New(event.Text, event.TextData{Delta: "fan-out"})))
		for j := 0; j < clients; j++ {
			d := <-got
			lat = append(lat, d.at.Sub(t0))
		}
	}
	b.StopTimer()
	cancel()
	wg.Wait()
	slices.Sort(lat)
	b.ReportMetric(ms(percentile(lat, 0.5)), "p50_ms")
	b.ReportMetric(ms(percentile(lat, 0.99)), "p99_ms")
	b.ReportMetric(ms(lat[len(lat)-1]), "max_ms")
}

// BenchmarkReplay10k measures attaching to a session of 10,000 events:
// time to the first event and to the last, over SSE on loopback.
func BenchmarkReplay10k(b *testing.B) {
	const n = 10000
	e := startTB(b, opts{})
	id, err := e.sessions.Create()
	require.NoError(b, err)
	for i := 0; i < n; i++ {
		var ev event.Event
		if i%100 == 99 {
			ev = event.New(event.ToolResult, event.ToolResultData{ToolUseID: "toolu_01", Output: strings.Repeat("log line of the devvm\n", 40)})
		} else {
			ev = event.New(event.Text, event.TextData{Delta: fmt.Sprintf("word%d ", i)})
		}
		require.NoError(b, e.sessions.Append(id.ID, ev))
	}
	var first, last []time.Duration
	var bytes int64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		req, err := http.NewRequest(http.MethodGet, e.url+"/api/sessions/"+id.ID+"/stream", nil)
		require.NoError(b, err)
		req.Header.Set(IdentityHeader, "alice")
		ctx, cancel := context.WithCancel(context.Background())
		resp, err := e.client.Do(req.WithContext(ctx))
		require.NoError(b, err)
		cr := &countingReader{r: resp.Body}
		rd := &sseReader{br: newBufReaderFrom(cr)}
		ev, err := rd.next()
		require.NoError(b, err)
		first = append(first, time.Since(t0))
		for ev.id < n {
			ev, err = rd.next()
			require.NoError(b, err)
		}
		last = append(last, time.Since(t0))
		bytes += cr.n
		cancel()
		resp.Body.Close()
	}
	b.StopTimer()
	slices.Sort(first)
	slices.Sort(last)
	b.ReportMetric(ms(percentile(first, 0.5)), "first_ms")
	b.ReportMetric(ms(percentile(last, 0.5)), "last_ms")
	b.ReportMetric(ms(percentile(last, 0.99)), "last_p99_ms")
	b.ReportMetric(float64(bytes)/float64(b.N)/(1<<20), "MiB/replay")
}
