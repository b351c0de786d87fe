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
	// before, when set, is the same figure as the previous release
	// measured it, printed in the peer column for comparison.
	before string
}

var (
	benchAgent = &bench{pkg: "./internal/sshagent/", name: "BenchmarkLoginThroughAgent", benchtime: "30x"}
	benchVerb  = &bench{pkg: "./internal/keyholder/", name: "BenchmarkStatusRoundTrip", benchtime: "30x"}
	benchFan   = &bench{pkg: "./internal/api/", name: "BenchmarkFanout100", benchtime: "200x"}
	benchRep   = &bench{pkg: "./internal/api/", name: "BenchmarkReplay10k", benchtime: "100x"}
	benchTr    = &bench{pkg: "./internal/claude/", name: "BenchmarkTranslate", benchtime: "2s"}
	benchMem   = &bench{pkg: "./cmd/web/", name: "BenchmarkMemory10x10k", benchtime: "5x"}
	benchH1000 = &bench{pkg: "./cmd/web/", name: "BenchmarkHistory1000x10k", benchtime: "1x"}
	benchH10   = &bench{pkg: "./cmd/web/", name: "BenchmarkHistory10x10k", benchtime: "1x"}
	benchStall = &bench{pkg: "./cmd/keyholder/", name: "BenchmarkStalledConnections", benchtime: "1x"}
	benchShot  = &bench{pkg: "./internal/keyholder/", name: "BenchmarkScreenshotRoundTrip", benchtime: "15x"}
	benchPres  = &bench{pkg: "./internal/keyholder/", name: "BenchmarkPresenceRoundTrip", benchtime: "50x"}
)

// figures is the table, in the order printed. The targets are the ones
// each issue set; docs/performance.md explains how each is measured.
var figures = []figure{
	{name: "ssh login through the keyholder's agent (median)", bench: benchAgent, metric: "keyholder-median-ms", unit: "ms",
		peerMetric: "ssh-agent-median-ms", peer: "OpenSSH ssh-agent", ratioTarget: 1.05},
	{name: "status verb through the keyholder (median)", bench: benchVerb, metric: "keyholder_median_ms", unit: "ms",
		peerMetric: "openssh_median_ms", peer: "OpenSSH client", ratioTarget: 1.10},
	{name: "operator presence added to a mutating verb (median)", bench: benchPres, metric: "added_median_ms", unit: "ms", target: 5,
		note: "reset with presence (challenge + verified assertion) minus reset without, on the simulated host; the phone's signing is not counted"},
	{name: "keyholder RSS peak, 5,000 stalled connections", bench: benchStall, metric: "hwm_MiB", unit: "MiB", target: 48,
		before: "release 1: 84 MiB at 4,000"},
	{name: "SSE fan-out to 100 clients, p50", bench: benchFan, metric: "p50_ms", unit: "ms", target: 5},
	{name: "SSE fan-out to 100 clients, p99", bench: benchFan, metric: "p99_ms", unit: "ms", target: 5},
	{name: "replay of 10,000 events, first event (median)", bench: benchRep, metric: "first_ms", unit: "ms", target: 200},
	{name: "replay of 10,000 events, last event (median)", bench: benchRep, metric: "last_ms", unit: "ms", target: 200},
	{name: "replay of 10,000 events, last event (p99)", bench: benchRep, metric: "last_p99_ms", unit: "ms", target: 200},
	{name: "stream-json translation", bench: benchTr, metric: "MB/s", unit: "MB/s", target: 50, higher: true},
	{name: "web RSS, 10 sessions x 10,000 events loaded", bench: benchMem, metric: "rss_MiB_loaded", unit: "MiB", target: 150},
	{name: "web RSS peak after replaying them all", bench: benchMem, metric: "hwm_MiB", unit: "MiB", target: 150},
	// Sessions on disk (docs/sessions.md): release 1 read every log whole
	// at start and held every event; its figures are from the issue that
	// set these targets (300 sessions: 6.3 s, 803 MiB; 10: 34 MiB).
	{name: "sessions 1,000 x 10,000 events: start-up to full list", bench: benchH1000, metric: "startup_s", unit: "s", target: 1,
		before: "release 1: 6.3 s at 300 sessions"},
	{name: "sessions 1,000 x 10,000 events: web RSS after start", bench: benchH1000, metric: "rss_MiB_start", unit: "MiB", target: 64,
		before: "release 1: 803 MiB at 300 sessions"},
	{name: "sessions 1,000 x 10,000 events: cold replay of one (p99 of 30)", bench: benchH1000, metric: "replay_p99_ms", unit: "ms", target: 300,
		before: "release 1: from memory"},
	{name: "sessions 1,000 x 10,000 events: web RSS after 30 replays", bench: benchH1000, metric: "rss_MiB_after_replays", unit: "MiB", target: 128,
		before: "release 1: 803 MiB at 300 sessions"},
	{name: "sessions 10 x 10,000 events: start-up to full list", bench: benchH10, metric: "startup_s", unit: "s", target: 1},
	{name: "sessions 10 x 10,000 events: web RSS after start", bench: benchH10, metric: "rss_MiB_start", unit: "MiB", target: 64,
		before: "release 1: 34 MiB"},
	{name: "sessions 10 x 10,000 events: cold replay of one (p99 of 30)", bench: benchH10, metric: "replay_p99_ms", unit: "ms", target: 300,
		before: "release 1: from memory"},
	{name: "sessions 10 x 10,000 events: web RSS after 30 replays", bench: benchH10, metric: "rss_MiB_after_replays", unit: "MiB", target: 128,
		before: "release 1: 34 MiB"},
	// The recovery ladder (docs/pve-host.md): keyholder → SSH → pve-gate's
	// screendump, PPM → PNG, base64 back, on loopback.
	{name: "screenshot 1024x768 round trip (median)", bench: benchShot, metric: "median_ms", unit: "ms", target: 1000},
	{name: "screenshot 1024x768 PNG size (console text)", bench: benchShot, metric: "png_KiB", unit: "KiB", target: 200},
	{name: "UI first load, JS + CSS gzipped", metric: "KiB", unit: "KiB", target: 60},
}
