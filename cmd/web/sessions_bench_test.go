package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/event"
	"breakglass/internal/session"
	"breakglass/internal/testing/stacktest"
	"breakglass/internal/uuid"
)

// Sessions of the history benchmarks: each holds eventsPerSession events,
// in turns of turnEvents (a prompt, the agent's streamed text, a tool's
// output every 100 events, its end).
const (
	eventsPerSession = 10000
	turnEvents       = 1000
	// bytesPerSession is a little over what one generated log takes.
	bytesPerSession = 1 << 20
	// replays is how many sessions are replayed one after the other.
	replays = 30
)

// writeHistory writes n session folders in release 1's format
// (session.json with id and created_at, events.jsonl) under dir, from one
// generated log, and returns their ids.
func writeHistory(b *testing.B, dir string, n int) []string {
	b.Helper()
	require.NoError(b, os.MkdirAll(dir, 0o700))
	var log strings.Builder
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	for j := 0; j < eventsPerSession; j++ {
		var e event.Event
		switch {
		case j%turnEvents == 0:
			e = event.New(event.User, event.UserData{Text: fmt.Sprintf("incident step %d: check the disk and the services", j/turnEvents), Actor: "alice"})
		case j%turnEvents == 1:
			e = event.New(event.Session, event.SessionData{SessionID: "history", Model: "sonnet"})
		case j%turnEvents == turnEvents-1:
			e = event.New(event.Done, event.DoneData{Outcome: event.OutcomeSuccess, DurationMS: 1000})
		case j%100 == 98:
			e = event.New(event.ToolResult, event.ToolResultData{ToolUseID: "toolu_01", Output: strings.Repeat("log line of the devvm\n", 40)})
		default:
			e = event.New(event.Text, event.TextData{Delta: fmt.Sprintf("word%d ", j)})
		}
		e.ID = int64(j + 1)
		e.Time = t0.Add(time.Duration(j) * time.Second)
		line, err := json.Marshal(e)
		require.NoError(b, err)
		log.Write(line)
		log.WriteByte('\n')
	}
	body := []byte(log.String())
	require.Less(b, len(body), bytesPerSession)
	ids := make([]string, n)
	for i := range ids {
		id := uuid.New()
		ids[i] = id
		sdir := filepath.Join(dir, id)
		require.NoError(b, os.Mkdir(sdir, 0o700))
		meta := fmt.Sprintf(`{"id":%q,"created_at":%q}`, id, t0.Add(time.Duration(i)*time.Hour).Format(time.RFC3339))
		require.NoError(b, os.WriteFile(filepath.Join(sdir, "session.json"), []byte(meta+"\n"), 0o600))
		require.NoError(b, os.WriteFile(filepath.Join(sdir, "events.jsonl"), body, 0o600))
	}
	return ids
}

// needDisk fails b, saying plainly what it needs, when dir's file system
// has less than need bytes free.
func needDisk(b *testing.B, dir string, need uint64) {
	b.Helper()
	require.NoError(b, os.MkdirAll(dir, 0o700))
	var st syscall.Statfs_t
	require.NoError(b, syscall.Statfs(dir, &st))
	free := st.Bavail * uint64(st.Bsize)
	if free < need {
		b.Fatalf("this benchmark writes its sessions under %s and needs %.1f GiB free there; it has %.1f GiB. Free some space, or point TMPDIR at a file system with room.",
			dir, float64(need)/(1<<30), float64(free)/(1<<30))
	}
}

// listAll reads GET /api/sessions and returns how many sessions it lists.
func listAll(b *testing.B, w *stacktest.Web) int {
	b.Helper()
	code, body := w.Do(b, http.MethodGet, "/api/sessions", "")
	require.Equal(b, http.StatusOK, code, body)
	var infos []json.RawMessage
	require.NoError(b, json.Unmarshal([]byte(body), &infos))
	return len(infos)
}

// replayWhole attaches to session id from the start and reads its stream to
// the last event, returning how long that took.
func replayWhole(b *testing.B, w *stacktest.Web, id string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	t0 := time.Now()
	st := w.Attach(b, ctx, id, 0)
	for {
		e, err := st.Next()
		require.NoError(b, err)
		if e.ID == eventsPerSession {
			break
		}
	}
	d := time.Since(t0)
	st.Close()
	return d
}

// benchHistory measures the web against n sessions of eventsPerSession
// events on disk: the time from starting the process to a full list, its
// resident memory then, a cold replay of whole sessions one after the
// other (none was attached since the start), and the memory after them.
// The data is written in release 1's format and its summaries rebuilt once
// before the measured start (upgrade_listed_s and upgrade_rebuilt_s: the
// first start after the upgrade, to its list and to the end of the
// rebuild), so the measured start reads summaries only.
func benchHistory(b *testing.B, n int) {
	s := newStack(b)
	dir := s.SessionsDir
	needDisk(b, filepath.Dir(dir), uint64(n)*bytesPerSession*3/2)
	ids := writeHistory(b, dir, n)
	buildWeb(b) // not part of any figure

	// The first start after an upgrade from release 1 lists the sessions
	// at once and rebuilds every summary from its log after start, once;
	// it runs here in-process, to its end, before the measured start.
	t0 := time.Now()
	m, err := session.New(session.Config{Dir: dir, Runner: idle{}})
	require.NoError(b, err)
	require.Len(b, m.List(), n)
	listed := time.Since(t0)
	<-m.Rebuilt()
	require.NoError(b, m.Close())
	first := time.Since(t0)

	var startup, rss, rssAfter float64
	var times []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		w := s.StartWeb(b)
		require.Equal(b, n, listAll(b, w))
		startup += time.Since(t0).Seconds()
		pid := w.Pid()
		rss += rssMiB(b, pid, "VmRSS")
		for r := 0; r < replays; r++ {
			times = append(times, replayWhole(b, w, ids[r%len(ids)]))
		}
		rssAfter += rssMiB(b, pid, "VmRSS")
		require.NoError(b, w.Stop())
	}
	b.StopTimer()
	slices.Sort(times)
	p99 := times[(len(times)*99+99)/100-1]
	k := float64(b.N)
	b.ReportMetric(listed.Seconds(), "upgrade_listed_s")
	b.ReportMetric(first.Seconds(), "upgrade_rebuilt_s")
	b.ReportMetric(startup/k, "startup_s")
	b.ReportMetric(rss/k, "rss_MiB_start")
	b.ReportMetric(float64(p99.Microseconds())/1000, "replay_p99_ms")
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "replay_median_ms")
	b.ReportMetric(rssAfter/k, "rss_MiB_after_replays")
}

// BenchmarkHistory1000x10k is benchHistory with 1,000 sessions (about
// 1 GiB on disk).
func BenchmarkHistory1000x10k(b *testing.B) { benchHistory(b, 1000) }

// BenchmarkHistory10x10k is benchHistory with 10 sessions, so the growth
// from 10 to 1,000 is visible.
func BenchmarkHistory10x10k(b *testing.B) { benchHistory(b, 10) }
