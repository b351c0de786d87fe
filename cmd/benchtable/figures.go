package main

// bench is one `go test -bench` run: one benchmark of one package.
type bench struct {
	// pkg is the package path relative to the module root.
	pkg string
	// name is the benchmark's function name.
	name string
	// benchtime is passed to -benchtime.
	benchtime string
}

// figure is one row of the table.
type figure struct {
	// name says what is measured.
	name string
	// source is where the number comes from: a benchmark, or the UI's size
	// report when bench is nil.
	bench *bench
	// metric is the unit the benchmark reports the figure in.
	metric string
	// unit is how the value is printed.
	unit string
	// peerMetric, when set, is the same figure for the peer, reported by
	// the same benchmark in the same run; peer names it.
	peerMetric string
	peer       string
	// target is the goal; higher means "at least target" (a throughput),
	// else "at most target". ratioTarget, when set, applies to
	// value/peer instead of the value.
	target      float64
	higher      bool
	ratioTarget float64
	// note explains the figure in one line under the table.
	note string
}

var (
	benchAgent = &bench{pkg: "./internal/sshagent/", name: "BenchmarkLoginThroughAgent", benchtime: "30x"}
	benchVerb  = &bench{pkg: "./internal/keyholder/", name: "BenchmarkStatusRoundTrip", benchtime: "30x"}
	benchFan   = &bench{pkg: "./internal/api/", name: "BenchmarkFanout100", benchtime: "200x"}
	benchRep   = &bench{pkg: "./internal/api/", name: "BenchmarkReplay10k", benchtime: "100x"}
	benchTr    = &bench{pkg: "./internal/claude/", name: "BenchmarkTranslate", benchtime: "2s"}
	benchMem   = &bench{pkg: "./cmd/web/", name: "BenchmarkMemory10x10k", benchtime: "5x"}
)

// figures is the table, in the order printed. The targets are the ones
// each issue set; docs/performance.md explains how each is measured.
var figures = []figure{
	{name: "ssh login through the keyholder's agent (median)", bench: benchAgent, metric: "keyholder-median-ms", unit: "ms",
		peerMetric: "ssh-agent-median-ms", peer: "OpenSSH ssh-agent", ratioTarget: 1.05},
	{name: "status verb through the keyholder (median)", bench: benchVerb, metric: "keyholder_median_ms", unit: "ms",
		peerMetric: "openssh_median_ms", peer: "OpenSSH client", ratioTarget: 1.10},
	{name: "SSE fan-out to 100 clients, p50", bench: benchFan, metric: "p50_ms", unit: "ms", target: 5},
	{name: "SSE fan-out to 100 clients, p99", bench: benchFan, metric: "p99_ms", unit: "ms", target: 5},
	{name: "replay of 10,000 events, first event (median)", bench: benchRep, metric: "first_ms", unit: "ms", target: 200},
	{name: "replay of 10,000 events, last event (median)", bench: benchRep, metric: "last_ms", unit: "ms", target: 200},
	{name: "replay of 10,000 events, last event (p99)", bench: benchRep, metric: "last_p99_ms", unit: "ms", target: 200},
	{name: "stream-json translation", bench: benchTr, metric: "MB/s", unit: "MB/s", target: 50, higher: true},
	{name: "web RSS, 10 sessions x 10,000 events loaded", bench: benchMem, metric: "rss_MiB_loaded", unit: "MiB", target: 150},
	{name: "web RSS peak after replaying them all", bench: benchMem, metric: "hwm_MiB", unit: "MiB", target: 150},
	{name: "UI first load, JS + CSS gzipped", metric: "KiB", unit: "KiB", target: 60},
}
