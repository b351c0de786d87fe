package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"breakglass/internal/claude"
	"breakglass/internal/event"
	"breakglass/internal/session"
)

// idle is a runner that is never asked to run.
type idle struct{}

func (idle) Run(context.Context, claude.Turn, func(event.Event)) claude.Outcome {
	return claude.Outcome{Outcome: event.OutcomeError, ExitCode: -1}
}

// rssMiB reads a /proc/<pid>/status field (VmRSS, VmHWM) in MiB.
func rssMiB(b *testing.B, pid int, field string) float64 {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(b, err)
	for _, line := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			require.NoError(b, err)
			return float64(kb) / 1024
		}
	}
	b.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// BenchmarkMemory10x10k measures the resident memory of the web process
// holding 10 sessions of 10,000 events each (reloaded from disk at start),
// before and after one client replayed every session.
func BenchmarkMemory10x10k(b *testing.B) {
	const sessions, events = 10, 10000
	s := newStack(b)
	dir := s.SessionsDir
	m, err := session.New(session.Config{Dir: dir, Runner: idle{}})
	require.NoError(b, err)
	var ids []string
	for i := 0; i < sessions; i++ {
		info, err := m.Create()
		require.NoError(b, err)
		ids = append(ids, info.ID)
		for j := 0; j < events; j++ {
			var e event.Event
			if j%100 == 99 {
				e = event.New(event.ToolResult, event.ToolResultData{ToolUseID: "toolu_01", Output: strings.Repeat("log line of the devvm\n", 40)})
			} else {
				e = event.New(event.Text, event.TextData{Delta: fmt.Sprintf("word%d ", j)})
			}
			require.NoError(b, m.Append(info.ID, e))
		}
	}
	require.NoError(b, m.Close())
	var disk int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, _ error) error {
		if fi != nil && !fi.IsDir() {
			disk += fi.Size()
		}
		return nil
	})

	var idleRSS, replayRSS, hwm float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		w := s.StartWeb(b)
		pid := w.Pid()
		idleRSS += rssMiB(b, pid, "VmRSS")
		for _, id := range ids {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			st := w.Attach(b, ctx, id, 0)
			for {
				e, err := st.Next()
				require.NoError(b, err)
				if e.ID == events {
					break
				}
			}
			cancel()
		}
		replayRSS += rssMiB(b, pid, "VmRSS")
		hwm += rssMiB(b, pid, "VmHWM")
		require.NoError(b, w.Stop())
	}
	b.StopTimer()
	n := float64(b.N)
	b.ReportMetric(idleRSS/n, "rss_MiB_loaded")
	b.ReportMetric(replayRSS/n, "rss_MiB_after_replay")
	b.ReportMetric(hwm/n, "hwm_MiB")
	b.ReportMetric(float64(disk)/(1<<20), "disk_MiB")
}
