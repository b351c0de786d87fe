package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"
)

func main() {
	os.Exit(start(os.Args[1:], os.Stdout, os.Stderr))
}

// start runs the command and returns its exit code.
func start(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("benchtable", flag.ContinueOnError)
	fs.SetOutput(stderr)
	run := fs.String("run", "", "only the rows whose name matches this regexp")
	goBin := fs.String("go", "go", "the go command")
	node := fs.String("node", "node", "the node command (for the UI's size report)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	re, err := regexp.Compile(*run)
	if err != nil {
		fmt.Fprintf(stderr, "benchtable: -run: %v\n", err)
		return 2
	}
	var rows []figure
	for _, f := range figures {
		if re.MatchString(f.name) {
			rows = append(rows, f)
		}
	}
	r := runner{goBin: *goBin, node: *node, log: stderr, results: map[*bench]benchResult{}}
	results := make([]rowResult, 0, len(rows))
	for _, f := range rows {
		results = append(results, r.measure(context.Background(), f))
	}
	fmt.Fprint(stdout, render(results))
	fmt.Fprintf(stdout, "\n%s\n", machine(*goBin))
	for _, res := range results {
		if res.err != nil || !res.pass {
			return 1
		}
	}
	return 0
}

// benchResult is one benchmark's metrics by unit, or why it has none.
type benchResult struct {
	metrics map[string]float64
	err     error
}

// runner runs each benchmark once, however many rows read it.
type runner struct {
	goBin   string
	node    string
	log     io.Writer
	results map[*bench]benchResult
}

// measure returns one row's figures.
func (r *runner) measure(ctx context.Context, f figure) rowResult {
	var m map[string]float64
	var err error
	if f.bench == nil {
		m, err = r.uiSize(ctx)
	} else {
		res, ok := r.results[f.bench]
		if !ok {
			res.metrics, res.err = r.runBench(ctx, f.bench)
			r.results[f.bench] = res
		}
		m, err = res.metrics, res.err
	}
	return evaluate(f, m, err)
}

// runBench runs b and parses its result line.
func (r *runner) runBench(ctx context.Context, b *bench) (map[string]float64, error) {
	args := []string{"test", "-run", "^$", "-bench", "^" + b.name + "$", "-benchtime", b.benchtime, "-count", "1", b.pkg}
	fmt.Fprintf(r.log, "benchtable: %s %s\n", r.goBin, strings.Join(args, " "))
	start := time.Now()
	cmd := exec.CommandContext(ctx, r.goBin, args...)
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	runErr := cmd.Run()
	fmt.Fprintf(r.log, "benchtable: %s done in %s\n", b.name, time.Since(start).Round(time.Second))
	m, err := parseBench(out.Bytes(), b.name)
	if runErr != nil || err != nil {
		return nil, fmt.Errorf("%s %s: %v %v\n%s", b.pkg, b.name, runErr, err, tail(out.Bytes(), 2000))
	}
	return m, nil
}

// uiSize reads the UI's size report (ui/scripts/size.mjs over ui/dist).
func (r *runner) uiSize(ctx context.Context) (map[string]float64, error) {
	cmd := exec.CommandContext(ctx, r.node, "ui/scripts/size.mjs")
	// The report exits non-zero over its budget, after printing the size:
	// the table judges it like every other figure.
	out, err := cmd.CombinedOutput()
	kib, perr := parseUISize(out)
	if perr != nil {
		return nil, fmt.Errorf("run %s ui/scripts/size.mjs (needs Node.js and a built ui/dist): %v: %w\n%s", r.node, err, perr, tail(out, 1000))
	}
	return map[string]float64{"KiB": kib}, nil
}

// benchLine matches a benchmark's result line: name, optional -GOMAXPROCS,
// iterations, then value/unit pairs.
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+(\d+)\s+(.*)$`)

// parseBench returns the value of every unit on name's result line in out
// (the standard `go test -bench` format).
func parseBench(out []byte, name string) (map[string]float64, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(sc.Text())
		if m == nil || m[1] != name {
			continue
		}
		fields := strings.Fields(m[3])
		if len(fields)%2 != 0 {
			return nil, fmt.Errorf("odd value/unit pairs in %q", sc.Text())
		}
		res := map[string]float64{}
		for i := 0; i < len(fields); i += 2 {
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return nil, fmt.Errorf("value %q in %q: %w", fields[i], sc.Text(), err)
			}
			res[fields[i+1]] = v
		}
		return res, nil
	}
	return nil, fmt.Errorf("no result line for %s", name)
}

// uiLine is the first line of ui/scripts/size.mjs's report.
var uiLine = regexp.MustCompile(`first load JS\+CSS: ([0-9.]+) KiB gzip`)

func parseUISize(out []byte) (float64, error) {
	m := uiLine.FindSubmatch(out)
	if m == nil {
		return 0, errors.New(`no "first load JS+CSS: N KiB gzip" line`)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// machine describes where the table was measured.
func machine(goBin string) string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	goVer := runtime.Version()
	if out, err := exec.Command(goBin, "env", "GOVERSION").Output(); err == nil {
		goVer = strings.TrimSpace(string(out))
	}
	load := ""
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			load = fmt.Sprintf(", load average %s %s %s at the end", f[0], f[1], f[2])
		}
	}
	sshVer := ""
	if out, err := exec.Command("ssh", "-V").CombinedOutput(); err == nil {
		sshVer = ", " + strings.TrimSpace(string(out))
	}
	return fmt.Sprintf("Machine: %d cores (nproc), %s, %s/%s, %s%s%s; %s.",
		runtime.NumCPU(), cpu, runtime.GOOS, runtime.GOARCH, goVer, sshVer, load, time.Now().UTC().Format("2006-01-02 15:04 UTC"))
}
