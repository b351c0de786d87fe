// Command benchtable runs the project's performance benchmarks one after
// the other and prints one Markdown table: every figure with its target,
// the peer it is compared with where there is one (OpenSSH's ssh-agent,
// the OpenSSH client), and PASS or FAIL. `make bench` runs it; the table in
// docs/performance.md is its output, with the machine it ran on.
//
//	go run ./cmd/benchtable            # every figure
//	go run ./cmd/benchtable -run Fan   # only the rows whose name matches
//
// It owns the list of figures and their targets (figures.go); the
// benchmarks themselves live next to the code they measure. It never runs
// benchmarks in parallel (their numbers would measure each other), and it
// exits non-zero when a figure misses its target or a benchmark fails.
package main
