package pvegate_test

import (
	"context"
	"fmt"
	"strings"
	"sync"

	"breakglass/internal/pvegate"
)

// call is one command a fakeRunner received.
type call struct {
	argv  []string
	stdin string
}

// fakeRunner records every command and answers from a small simulated VM:
// qm status says running or stopped, stop/start/reset change it. Commands
// named in hang block until their context ends (a wedged qm); those in
// stuck block until release is closed whatever the context says (a read
// no deadline reaches).
type fakeRunner struct {
	qm      string
	mu      sync.Mutex
	calls   []call
	state   string
	fail    map[string]pvegate.Result // key: argv joined by spaces, qm path left out
	hang    map[string]bool
	stuck   map[string]bool
	release chan struct{}
	entered chan string // receives the key of each command as it starts, if set
	// stopsTo is the state qm stop leaves ("stopped" unless set).
	stopsTo string
}

func newFakeRunner(qm string) *fakeRunner {
	return &fakeRunner{
		qm:      qm,
		state:   "running",
		fail:    map[string]pvegate.Result{},
		hang:    map[string]bool{},
		stuck:   map[string]bool{},
		release: make(chan struct{}),
	}
}

func (f *fakeRunner) key(argv []string) string {
	if len(argv) > 0 && argv[0] == f.qm {
		return "qm " + strings.Join(argv[1:], " ")
	}
	return strings.Join(argv, " ")
}

func (f *fakeRunner) Run(ctx context.Context, argv []string, stdin string) (pvegate.Result, error) {
	k := f.key(argv)
	f.mu.Lock()
	f.calls = append(f.calls, call{append([]string(nil), argv...), stdin})
	entered := f.entered
	f.mu.Unlock()
	if entered != nil {
		entered <- k
	}
	switch {
	case f.hang[k]:
		<-ctx.Done()
		return pvegate.Result{}, fmt.Errorf("%s: %w", k, pvegate.ErrTimeout)
	case f.stuck[k]:
		<-f.release
		return pvegate.Result{Output: []byte("late\n")}, nil
	}
	if r, ok := f.fail[k]; ok {
		return r, nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	out := func(s string) (pvegate.Result, error) { return pvegate.Result{Output: []byte(s)}, nil }
	switch {
	case strings.HasPrefix(k, "qm status "):
		return out("status: " + f.state + "\n")
	case strings.HasPrefix(k, "qm stop "):
		f.state = "stopped"
		if f.stopsTo != "" {
			f.state = f.stopsTo
		}
		return out("")
	case strings.HasPrefix(k, "qm start "):
		f.state = "running"
		return out("")
	case strings.HasPrefix(k, "qm reset "):
		return out("")
	case strings.HasPrefix(k, "qm unlock "):
		return out("")
	case strings.HasPrefix(k, "qm config "):
		return out("name: devvm\nmemory: 8192\nlock: backup\n")
	case strings.HasPrefix(k, "qm monitor "):
		return out("qm> " + strings.SplitN(stdin, "\n", 2)[0] + "\nVM status: running\n")
	case k == "free -m":
		return out("Mem: 64000 1000 63000\n")
	case k == "pvesm status":
		return out("local dir active\n")
	case k == "dmesg -T":
		return out("[x] eth0 up\n[y] Out of memory: Killed process 4242 (qemu)\n[z] INFO: task kworker blocked for more than 120 seconds.\n")
	}
	return pvegate.Result{ExitCode: 127}, nil
}

// argvs returns the commands run so far, the qm path shown as "qm".
func (f *fakeRunner) argvs() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]string, len(f.calls))
	for i, c := range f.calls {
		out[i] = f.key(c.argv)
	}
	return out
}

func (f *fakeRunner) rawCalls() []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls...)
}
