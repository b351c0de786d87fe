package systemtest

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/devstack"
	"breakglass/internal/ipc"
	"breakglass/internal/keyholder"
	"breakglass/internal/presence"
	"breakglass/internal/testing/apidouble"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/testing/webtest"
)

// Sizes of the load tests. Zero means the short form for make test, or
// the long one under BREAKGLASS_SOAK=1 (make soak).
var (
	streamFor   = flag.Duration("stream-for", 0, "how long the two turns of TestSSELoad stream (0: 5s, 60s under BREAKGLASS_SOAK=1)")
	subscribers = flag.Int("subscribers", 500, "SSE subscribers of TestSSELoad, spread over 10 sessions")
	verbCount   = flag.Int("verbs", 0, "sequential verbs of TestVerbSoak (0: 1000, 10000 under BREAKGLASS_SOAK=1)")
)

func streamDuration() time.Duration {
	switch {
	case *streamFor > 0:
		return *streamFor
	case soak():
		return 60 * time.Second
	}
	return 5 * time.Second
}

func verbsToRun() int {
	switch {
	case *verbCount > 0:
		return *verbCount
	case soak():
		return 10000
	}
	return 1000
}

// subscriberLog is what one SSE client saw.
type subscriberLog struct {
	session    int
	events     []ev
	reconnects int
	err        error
}

// follow reads session id from the start until a done, reconnecting by id
// whenever the server drops it (a slow client is dropped and resumes), and
// until ctx ends for a session with no turn.
func follow(ctx context.Context, w *stacktest.Web, client *http.Client, id string, until string) ([]ev, int, error) {
	var got []ev
	reconnects := -1
	for {
		reconnects++
		var last int64
		if len(got) > 0 {
			last = got[len(got)-1].ID
		}
		st, err := w.AttachErr(ctx, client, id, last)
		if err != nil {
			if ctx.Err() != nil && until == "" {
				return got, reconnects, nil
			}
			return got, reconnects, err
		}
		for {
			e, err := st.Next()
			if err != nil {
				st.Close()
				if ctx.Err() != nil {
					if until == "" {
						return got, reconnects, nil
					}
					return got, reconnects, fmt.Errorf("after %d events: %w", len(got), ctx.Err())
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					break // dropped: resume by id
				}
				return got, reconnects, err
			}
			got = append(got, e)
			if e.Type == until {
				st.Close()
				return got, reconnects, nil
			}
		}
	}
}

// TestSSELoad: 500 SSE subscribers over 10 sessions while two turns of the
// real claude CLI stream text for a while (5 s; 60 s under make soak).
// Every subscriber of a streaming session receives every event in order,
// with no gap and no duplicate (a dropped slow client resumes by id, as
// EventSource does); the idle sessions' subscribers get keepalives and no
// event; once they all leave, the web's goroutines come back to where they
// were; the web's memory stays bounded and is reported.
func TestSSELoad(t *testing.T) {
	const sessions = 10
	const every = 10 * time.Millisecond
	n := *subscribers
	d := streamDuration()
	words := make([]string, int(d/every))
	for i := range words {
		words[i] = "w" + strconv.Itoa(i)
	}
	long := strings.Join(words, " ")
	w := stacktest.New(t, stacktest.Options{Script: []apidouble.Turn{
		apidouble.T(apidouble.Text(long).Every(every)),
		apidouble.T(apidouble.Text(long).Every(every)),
	}})
	web := w.StartWeb(t, "BREAKGLASS_SSE_KEEPALIVE_SECONDS=1")
	ids := make([]string, sessions)
	for i := range ids {
		ids[i] = web.NewSession(t)
	}
	baseGoroutines := web.Metric(t, "go_goroutines")
	baseHeap := web.Metric(t, "go_memstats_heap_inuse_bytes")
	baseRSS := web.Metric(t, "process_resident_memory_bytes")

	tr := &http.Transport{MaxIdleConnsPerHost: -1}
	client := &http.Client{Transport: tr}
	ctx, cancel := context.WithTimeout(context.Background(), d+3*time.Minute)
	defer cancel()
	idleCtx, stopIdle := context.WithCancel(ctx)
	defer stopIdle()
	logs := make([]subscriberLog, n)
	var wg sync.WaitGroup
	for i := range logs {
		s := i % sessions
		logs[i].session = s
		wg.Add(1)
		go func() {
			defer wg.Done()
			if s < 2 {
				logs[i].events, logs[i].reconnects, logs[i].err = follow(ctx, web, client, ids[s], "done")
			} else {
				logs[i].events, logs[i].reconnects, logs[i].err = follow(idleCtx, web, client, ids[s], "")
			}
		}()
	}
	require.True(t, eventually(time.Minute, func() bool { return web.Metric(t, "breakglass_sse_subscribers") >= float64(n) }),
		"not all %d subscribers attached: %v", n, web.Metric(t, "breakglass_sse_subscribers"))
	peakGoroutines := web.Metric(t, "go_goroutines")

	began := time.Now()
	web.Prompt(t, ids[0], "stream one")
	web.Prompt(t, ids[1], "stream two")
	var peakHeap, peakRSS float64
	sample := func() {
		peakHeap = max(peakHeap, web.Metric(t, "go_memstats_heap_inuse_bytes"))
		peakRSS = max(peakRSS, web.Metric(t, "process_resident_memory_bytes"))
		peakGoroutines = max(peakGoroutines, web.Metric(t, "go_goroutines"))
	}
	streamed := make(chan struct{})
	go func() {
		wg.Wait()
		close(streamed)
	}()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for streaming := true; streaming; {
		select {
		case <-tick.C:
			sample()
			if web.Metric(t, "breakglass_turns_running") == 0 {
				streaming = false
			}
		case <-ctx.Done():
			t.Fatal("the turns did not end")
		}
	}
	took := time.Since(began)
	sample()
	stopIdle()
	<-streamed
	client.CloseIdleConnections()

	// The log each subscriber must have seen.
	want := make([][]ev, 2)
	for s := range want {
		want[s] = web.History(t, ids[s])
		require.Equal(t, "done", want[s][len(want[s])-1].Type)
		assert.Equal(t, "success", want[s][len(want[s])-1].Data["outcome"], "%v", webtest.Types(want[s]))
		text, _ := joinText(want[s])
		assert.Equal(t, long, text)
	}
	delivered, reconnects, keepIdle := 0, 0, 0
	for i, l := range logs {
		require.NoError(t, l.err, "subscriber %d (session %d)", i, l.session)
		reconnects += l.reconnects
		delivered += len(l.events)
		if l.session >= 2 {
			keepIdle += len(l.events)
			continue
		}
		exp := want[l.session]
		require.Len(t, l.events, len(exp), "subscriber %d got %d of %d events", i, len(l.events), len(exp))
		for j := range exp {
			if exp[j].ID != l.events[j].ID || exp[j].Raw != l.events[j].Raw {
				t.Fatalf("subscriber %d: event %d is %d %s, want %d %s", i, j, l.events[j].ID, l.events[j].Type, exp[j].ID, exp[j].Type)
			}
		}
	}
	assert.Zero(t, keepIdle, "the idle sessions' subscribers got events")

	assert.True(t, eventually(30*time.Second, func() bool { return web.Metric(t, "breakglass_sse_subscribers") == 0 }),
		"subscribers still counted after they left")
	var afterGoroutines float64
	assert.True(t, eventually(30*time.Second, func() bool {
		afterGoroutines = web.Metric(t, "go_goroutines")
		return afterGoroutines <= baseGoroutines+2
	}), "goroutines after the subscribers left: %v, before: %v", afterGoroutines, baseGoroutines)

	mib := func(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }
	t.Logf("SSE load: %d subscribers over %d sessions, 2 turns of %d deltas streamed in %v; %d events delivered (%d per streaming subscriber), %d reconnects after drops",
		n, sessions, len(words), took.Round(time.Millisecond), delivered, len(want[0]), reconnects)
	t.Logf("web goroutines: %v before, %v peak, %v after; heap in use: %s before, %s peak; RSS: %s before, %s peak",
		baseGoroutines, peakGoroutines, afterGoroutines, mib(baseHeap), mib(peakHeap), mib(baseRSS), mib(peakRSS))
	assert.Less(t, peakRSS, float64(256<<20), "the web's resident memory under load")
	assert.Less(t, peakHeap, float64(256<<20), "the web's heap under load")
}

// TestVerbSoak sends 1000 sequential verbs (10,000 under make soak) to the
// keyholder, against the simulated Proxmox host: every one succeeds, and
// neither file descriptors nor goroutines grow. The binary shows its
// descriptors, threads and memory in /proc; the in-process keyholder (the
// same package over the same socket protocol) shows its goroutines too.
func TestVerbSoak(t *testing.T) {
	n := verbsToRun()
	run := func(t *testing.T, c *ipc.Client, measure func() procStat) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(n)*time.Second)
		defer cancel()
		do := func(i int) {
			res, err := c.Run(ctx, "status", "soak")
			require.NoError(t, err, "verb %d", i)
			require.Equal(t, 0, res.ExitCode, "verb %d: %s", i, res.Output)
		}
		for i := range 20 { // warm up: pools, buffers, lazy init
			do(i)
		}
		before := measure()
		began := time.Now()
		for i := range n {
			do(i)
		}
		took := time.Since(began)
		var after procStat
		ok := eventually(10*time.Second, func() bool {
			after = measure()
			return after.fds <= before.fds && after.threads <= before.threads+2
		})
		t.Logf("%d verbs in %v (%.0f verbs/s, %.2f ms each): fds %d -> %d, threads %d -> %d, RSS %d -> %d KiB",
			n, took.Round(time.Millisecond), float64(n)/took.Seconds(), float64(took.Microseconds())/float64(n)/1000,
			before.fds, after.fds, before.threads, after.threads, before.rssKiB, after.rssKiB)
		assert.True(t, ok, "file descriptors or threads grew: %+v -> %+v", before, after)
	}

	t.Run("binary", func(t *testing.T) {
		w := stacktest.New(t, stacktest.Options{})
		kh := w.StartKeyholder(t)
		c := ipc.NewClient(filepath.Join(w.SocketDir, ipc.SocketName))
		defer c.Close()
		run(t, c, func() procStat { return statOf(t, kh.Pid()) })
		assert.Equal(t, int64(n+20), w.PVE.Connections(), "one SSH connection per verb, nothing retried")
	})

	t.Run("in-process", func(t *testing.T) {
		w := stacktest.New(t, stacktest.Options{})
		host := func(addr, user string) keyholder.Host {
			ip, port, err := net.SplitHostPort(addr)
			require.NoError(t, err)
			n, err := strconv.Atoi(port)
			require.NoError(t, err)
			return keyholder.Host{Host: ip, Port: n, User: user}
		}
		kh, err := keyholder.New(keyholder.Config{
			PVE:            host(w.PVEAddr, "root"),
			PVEKeyPath:     w.PVEKey,
			DevVM:          host(w.DevvmAddr, devstack.DevvmUser),
			DevVMKeyPath:   w.DevvmKey,
			KnownHostsPath: w.KnownHosts,
			// The binary's timeout in the same stack (devstack's).
			VerbTimeout: 30 * time.Second,
			Presence:    presence.ModeOff, // not about presence
		})
		require.NoError(t, err)
		defer kh.Close()
		ln, err := ipc.Listen(filepath.Join(w.SocketDir, ipc.SocketName))
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(context.Background())
		served := make(chan error, 1)
		go func() { served <- ipc.Serve(ctx, ln, ipc.ServerConfig{Handler: kh.Handler()}) }()
		defer func() {
			cancel()
			assert.NoError(t, <-served)
		}()
		c := ipc.NewClient(ln.Path())
		defer c.Close()

		// This process's RSS also holds the race detector's shadow memory
		// and every earlier test: the heap after a GC is the figure, with
		// the simulated VM's record of every qm call cleared first (it is
		// the double's, and grows by design).
		var beforeG, afterG int
		var beforeHeap uint64
		run(t, c, func() procStat {
			st := statOf(t, os.Getpid())
			if beforeG == 0 {
				beforeG = runtime.NumGoroutine()
				w.VM.ResetCalls()
				beforeHeap = heapInuse()
			}
			return st
		})
		w.VM.ResetCalls()
		ok := eventually(10*time.Second, func() bool {
			afterG = runtime.NumGoroutine()
			return afterG <= beforeG
		})
		afterHeap := heapInuse()
		t.Logf("goroutines of the keyholder, its client and the simulated host: %d -> %d; heap in use after GC: %.1f -> %.1f MiB",
			beforeG, afterG, float64(beforeHeap)/(1<<20), float64(afterHeap)/(1<<20))
		assert.True(t, ok, "goroutines grew: %d -> %d", beforeG, afterG)
		assert.Less(t, afterHeap, beforeHeap+1<<20, "the heap grew by more than 1 MiB")
	})
}

// heapInuse is this process's heap in use right after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}
