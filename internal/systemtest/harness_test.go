package systemtest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"breakglass/internal/testing/testbin"
	"breakglass/internal/testing/webtest"
)

// The stack each test runs against is internal/testing/stacktest's: the
// same builder as make run, cmd/web's tests and the red team.

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	// The processes are the tests' subjects; the goroutines that drove
	// them (readers, the blackhole, subscribers) must all have ended.
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "systemtest: goroutines left running:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// soak reports whether the long forms run (make soak sets BREAKGLASS_SOAK=1).
func soak() bool { return os.Getenv("BREAKGLASS_SOAK") == "1" }

// ev and stream are the SSE client of internal/testing/webtest.
type (
	ev     = webtest.Event
	stream = webtest.Stream
)

// procStat is what /proc/<pid> says about a process.
type procStat struct {
	fds     int
	threads int
	rssKiB  int
}

func statOf(t testing.TB, pid int) procStat {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	st := procStat{fds: len(fds)}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	require.NoError(t, err)
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "Threads:":
			st.threads, _ = strconv.Atoi(f[1])
		case "VmRSS:":
			st.rssKiB, _ = strconv.Atoi(f[1])
		}
	}
	return st
}

// procsMatching lists the live (not zombie) pids whose command line
// contains mark.
func procsMatching(mark string) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cl, []byte(mark)) {
			continue
		}
		st, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(st)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			if f := strings.Fields(s[i+1:]); len(f) > 0 && f[0] == "Z" {
				continue
			}
		}
		out = append(out, pid)
	}
	return out
}

// eventually retries cond until it holds or d passes, and returns its last
// answer. Between tries it yields for a short tick: a condition on another
// process (a count in /proc, a gauge) has no signal to wait on.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }
