package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBench(t *testing.T) {
	out := []byte(`goos: linux
goarch: amd64
pkg: breakglass/internal/api
cpu: AMD EPYC
BenchmarkFanout100-2   	     200	   2711334 ns/op	         1.690 p50_ms	         3.170 p99_ms	         9.000 max_ms
BenchmarkFanout1000-2   	     200	   2711334 ns/op	         7.000 p50_ms
PASS
ok  	breakglass/internal/api	3.1s
`)
	tests := []struct {
		name    string
		bench   string
		want    map[string]float64
		wantErr bool
	}{
		{name: "units", bench: "BenchmarkFanout100", want: map[string]float64{"ns/op": 2711334, "p50_ms": 1.69, "p99_ms": 3.17, "max_ms": 9}},
		{name: "not-a-prefix-match", bench: "BenchmarkFanout1000", want: map[string]float64{"ns/op": 2711334, "p50_ms": 7}},
		{name: "missing", bench: "BenchmarkReplay10k", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseBench(out, tc.bench)
			if tc.wantErr {
				require.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.InDeltaMapValues(t, tc.want, got, 1e-9)
		})
	}
	_, err := parseBench([]byte("BenchmarkX-2 10 5 ns/op 3\n"), "BenchmarkX")
	assert.Error(t, err, "odd value/unit pairs")
}

func TestParseUISize(t *testing.T) {
	kib, err := parseUISize([]byte("first load JS+CSS: 27.9 KiB gzip (78.2 KiB raw), budget 60 KiB\n  assets/x.js 1 B raw\n"))
	require.NoError(t, err)
	assert.InDelta(t, 27.9, kib, 1e-9)
	_, err = parseUISize([]byte("Error: ENOENT: no such file or directory, open 'ui/dist/index.html'\n"))
	assert.Error(t, err)
}

func TestEvaluate(t *testing.T) {
	peer := figure{name: "p", metric: "a", peerMetric: "b", peer: "stock", ratioTarget: 1.05, unit: "ms"}
	lower := figure{name: "l", metric: "p99_ms", target: 5, unit: "ms"}
	higher := figure{name: "h", metric: "MB/s", target: 50, higher: true, unit: "MB/s"}
	tests := []struct {
		name     string
		f        figure
		m        map[string]float64
		err      error
		wantPass bool
		wantErr  bool
	}{
		{name: "peer-within", f: peer, m: map[string]float64{"a": 100, "b": 98}, wantPass: true},
		{name: "peer-over", f: peer, m: map[string]float64{"a": 110, "b": 100}},
		{name: "peer-missing", f: peer, m: map[string]float64{"a": 110}, wantErr: true},
		{name: "lower-within", f: lower, m: map[string]float64{"p99_ms": 4.9}, wantPass: true},
		{name: "lower-over", f: lower, m: map[string]float64{"p99_ms": 5.1}},
		{name: "higher-within", f: higher, m: map[string]float64{"MB/s": 60}, wantPass: true},
		{name: "higher-under", f: higher, m: map[string]float64{"MB/s": 40}},
		{name: "metric-missing", f: lower, m: map[string]float64{}, wantErr: true},
		{name: "bench-failed", f: lower, err: errors.New("exit status 1"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := evaluate(tc.f, tc.m, tc.err)
			if tc.wantErr {
				assert.Error(t, r.err)
				assert.False(t, r.pass)
				return
			}
			require.NoError(t, r.err)
			assert.Equal(t, tc.wantPass, r.pass)
		})
	}
}

func TestRender(t *testing.T) {
	rows := []rowResult{
		evaluate(figure{name: "agent", metric: "a", peerMetric: "b", peer: "ssh-agent", ratioTarget: 1.05, unit: "ms"}, map[string]float64{"a": 500, "b": 510}, nil),
		evaluate(figure{name: "fan-out p99", metric: "p99_ms", target: 5, unit: "ms"}, map[string]float64{"p99_ms": 6}, nil),
		evaluate(figure{name: "memory", metric: "hwm_MiB", target: 150, unit: "MiB"}, nil, errors.New("web binary did not start")),
	}
	out := render(rows)
	lines := strings.Split(out, "\n")
	assert.Equal(t, "| agent | 500 ms | ratio ≤ 1.05 | ssh-agent: 510 ms | 0.98 of peer | PASS |", lines[2])
	assert.Equal(t, "| fan-out p99 | 6.00 ms | ≤ 5 ms | — | 1.20 of target | FAIL |", lines[3])
	assert.Equal(t, "| memory | — | ≤ 150 MiB | — | — | ERROR |", lines[4])
	before := render([]rowResult{evaluate(figure{name: "rss", metric: "m", target: 64, unit: "MiB", before: "release 1: 803 MiB"}, map[string]float64{"m": 32}, nil)})
	assert.Equal(t, "| rss | 32.0 MiB | ≤ 64 MiB | release 1: 803 MiB | 0.50 of target | PASS |", strings.Split(before, "\n")[2])
	assert.Contains(t, out, "memory: web binary did not start")
}

// TestFiguresNameTheirMetrics checks every row reads a benchmark the
// project has, so a renamed benchmark fails here, not at `make bench`.
func TestFiguresNameTheirMetrics(t *testing.T) {
	seen := map[string]bool{}
	for _, f := range figures {
		assert.False(t, seen[f.name], "repeated row %q", f.name)
		seen[f.name] = true
		assert.NotEmpty(t, f.metric, f.name)
		if f.peerMetric != "" {
			assert.Positive(t, f.ratioTarget, f.name)
		} else {
			assert.Positive(t, f.target, f.name)
		}
		if f.bench != nil {
			assert.True(t, strings.HasPrefix(f.bench.name, "Benchmark"), f.name)
			assert.NotEmpty(t, f.bench.benchtime, f.name)
			assert.True(t, hasFunc(t, filepath.Join("..", "..", f.bench.pkg), f.bench.name), "%s: no func %s in %s", f.name, f.bench.name, f.bench.pkg)
		}
	}
}

// hasFunc reports whether a test file of dir declares func name.
func hasFunc(t *testing.T, dir, name string) bool {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	require.NoError(t, err)
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		if strings.Contains(string(b), "func "+name+"(") {
			return true
		}
	}
	return false
}
