package vmwatch_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"breakglass/internal/ipc"
	"breakglass/internal/vmwatch"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name string
		res  ipc.Result
		err  error
		want vmwatch.State
	}{
		{"running", ipc.Result{Output: "cpus: 4\nstatus: running\nuptime: 12\n"}, nil, vmwatch.Running},
		{"stopped", ipc.Result{Output: "status: stopped\n"}, nil, vmwatch.Stopped},
		{"paused-is-not-running", ipc.Result{Output: "status: paused\n"}, nil, vmwatch.Stopped},
		{"locked", ipc.Result{Output: "lock: backup\nstatus: running\n"}, nil, vmwatch.Locked},
		{"empty-lock", ipc.Result{Output: "lock: \nstatus: running\n"}, nil, vmwatch.Running},
		{"no-status-line", ipc.Result{Output: "garbage\n"}, nil, vmwatch.Unreachable},
		{"nonzero-exit", ipc.Result{ExitCode: 2, Output: "status: running\n"}, nil, vmwatch.Unreachable},
		{"keyholder-down", ipc.Result{}, errors.New("dial unix: no such file"), vmwatch.Unreachable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, vmwatch.Read(tc.res, tc.err))
		})
	}
}

// script is a Keyholder answering status with a list of states, one per
// call; "down" is an error.
type script struct {
	mu    sync.Mutex
	next  []string
	verbs []string
}

func (s *script) Run(_ context.Context, verb, actor string) (ipc.Result, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.verbs = append(s.verbs, verb+" "+actor)
	st := s.next[0]
	s.next = s.next[1:]
	if st == "down" {
		return ipc.Result{}, errors.New("keyholder down")
	}
	return ipc.Result{Output: "status: " + st + "\n"}, nil
}

func TestChangesAreDebounced(t *testing.T) {
	ks := &script{next: strings.Fields("running running stopped running running stopped stopped stopped down running running down down running running")}
	var changes []string
	reg := prometheus.NewRegistry()
	w, err := vmwatch.New(vmwatch.Config{
		Keyholder:  ks,
		OnChange:   func(from, to vmwatch.State) { changes = append(changes, string(from)+">"+string(to)) },
		Registerer: reg,
	})
	require.NoError(t, err)
	assert.Equal(t, 1.0, testutil.ToFloat64(gauge(t, reg, "unknown")))
	for range len(ks.next) {
		w.Check(context.Background())
	}
	// The first agreed reading is the baseline; a lone stopped, a lone
	// down are not changes.
	assert.Equal(t, []string{"running>stopped", "stopped>running", "running>unreachable", "unreachable>running"}, changes)
	assert.Equal(t, vmwatch.Running, w.State())
	assert.Equal(t, 1.0, testutil.ToFloat64(gauge(t, reg, "running")))
	assert.Equal(t, 0.0, testutil.ToFloat64(gauge(t, reg, "unknown")))
	assert.Equal(t, 0.0, testutil.ToFloat64(gauge(t, reg, "stopped")))
	for _, v := range ks.verbs {
		assert.Equal(t, "status web:watch", v, "the watch runs status only")
	}
}

func gauge(t *testing.T, reg *prometheus.Registry, state string) prometheus.Collector {
	t.Helper()
	return prometheus.CollectorFunc(func(ch chan<- prometheus.Metric) {
		mfs, err := reg.Gather()
		require.NoError(t, err)
		for _, mf := range mfs {
			if mf.GetName() != "breakglass_vm_state" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == state {
					ch <- prometheus.MustNewConstMetric(prometheus.NewDesc("x", "x", nil, nil), prometheus.GaugeValue, m.GetGauge().GetValue())
				}
			}
		}
	})
}

// hang is a keyholder that never answers until the reading's context ends.
type hang struct{}

func (hang) Run(ctx context.Context, _, _ string) (ipc.Result, error) {
	<-ctx.Done()
	return ipc.Result{}, ctx.Err()
}

func TestAHangingKeyholderIsUnreachableNotAStall(t *testing.T) {
	w, err := vmwatch.New(vmwatch.Config{Keyholder: hang{}, Timeout: 50 * time.Millisecond})
	require.NoError(t, err)
	assert.Equal(t, vmwatch.Unreachable, w.Check(context.Background()))
}

func TestRunStopsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	w, err := vmwatch.New(vmwatch.Config{Keyholder: hang{}})
	require.NoError(t, err)
	go func() { w.Run(ctx); close(done) }()
	cancel()
	<-done
	assert.Equal(t, vmwatch.Unknown, w.State())
}
