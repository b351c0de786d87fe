package vmwatch

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/ipc"
)

// State is the VM as the watch reads it.
type State string

// The states. Unknown is the state before two readings agreed.
const (
	Running     State = "running"
	Stopped     State = "stopped"
	Locked      State = "locked"      // Proxmox holds a lock (backup, migrate, …)
	Unreachable State = "unreachable" // the keyholder or the Proxmox host did not answer
	Unknown     State = "unknown"
)

// States are every state, the label values of breakglass_vm_state.
var States = []State{Running, Stopped, Locked, Unreachable, Unknown}

// Keyholder runs a verb (ipc.Client satisfies it).
type Keyholder interface {
	Run(ctx context.Context, verb, actor string) (ipc.Result, error)
}

var _ Keyholder = (*ipc.Client)(nil)

// Defaults for a zero Config.
const (
	DefaultInterval = 60 * time.Second
	DefaultTimeout  = 30 * time.Second
	// Actor is who the watch's status requests are from, in the
	// keyholder's audit lines.
	Actor = "web:watch"
)

// Config configures a Watch. Keyholder is required.
type Config struct {
	Keyholder Keyholder
	// Interval is the time between readings ($BREAKGLASS_WATCH_SECONDS);
	// zero means DefaultInterval.
	Interval time.Duration
	// Timeout bounds one reading; zero means DefaultTimeout.
	Timeout time.Duration
	// OnChange, when set, is told of each agreed change of state after
	// the first (the first agreed reading is the baseline and is not a
	// change). It must not block.
	OnChange func(from, to State)
	// Logger gets changes and unreadable answers; nil means none.
	Logger hclog.Logger
	// Registerer receives breakglass_vm_state; nil means a private
	// registry.
	Registerer prometheus.Registerer
}

// Watch reads the VM's state. Run loops; Check takes one reading.
type Watch struct {
	kh       Keyholder
	interval time.Duration
	timeout  time.Duration
	onChange func(from, to State)
	log      hclog.Logger
	gauge    *prometheus.GaugeVec

	// mu protects the following.
	mu       sync.Mutex
	prev     State // the last reading
	reported State // the last agreed state
}

// New validates cfg and returns a Watch whose state is Unknown.
func New(cfg Config) (*Watch, error) {
	if cfg.Keyholder == nil {
		return nil, errors.New("vmwatch: Config.Keyholder is required")
	}
	w := &Watch{
		kh:       cfg.Keyholder,
		interval: cfg.Interval,
		timeout:  cfg.Timeout,
		onChange: cfg.OnChange,
		log:      cfg.Logger,
		prev:     Unknown,
		reported: Unknown,
	}
	if w.interval <= 0 {
		w.interval = DefaultInterval
	}
	if w.timeout <= 0 {
		w.timeout = DefaultTimeout
	}
	if w.onChange == nil {
		w.onChange = func(State, State) {}
	}
	if w.log == nil {
		w.log = hclog.NewNullLogger()
	}
	reg := cfg.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	w.gauge = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "breakglass_vm_state",
		Help: "The VM's state as the web's watch last agreed on (two readings): 1 for the current state, 0 for the others.",
	}, []string{"state"})
	if err := reg.Register(w.gauge); err != nil {
		return nil, fmt.Errorf("vmwatch: register metrics: %w", err)
	}
	w.setGauge(Unknown)
	return w, nil
}

func (w *Watch) setGauge(s State) {
	for _, st := range States {
		v := 0.0
		if st == s {
			v = 1
		}
		w.gauge.WithLabelValues(string(st)).Set(v)
	}
}

// State is the last agreed state.
func (w *Watch) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reported
}

// Run takes a reading every interval until ctx ends.
func (w *Watch) Run(ctx context.Context) {
	t := time.NewTicker(w.interval)
	defer t.Stop()
	w.Check(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			w.Check(ctx)
		}
	}
}

// Check takes one reading and, when it agrees with the one before and
// differs from the agreed state, makes it the agreed state and reports the
// change. It returns the reading.
func (w *Watch) Check(ctx context.Context) State {
	rctx, cancel := context.WithTimeout(ctx, w.timeout)
	res, err := w.kh.Run(rctx, "status", Actor)
	cancel()
	if ctx.Err() != nil {
		return Unknown // shutting down: not a reading
	}
	r := Read(res, err)
	if err != nil {
		w.log.Debug("status reading failed", "error", err)
	}
	w.mu.Lock()
	agreed := r == w.prev && r != w.reported
	from := w.reported
	w.prev = r
	if agreed {
		w.reported = r
		w.setGauge(r)
	}
	w.mu.Unlock()
	if agreed {
		if from == Unknown {
			w.log.Info("VM state", "state", r)
		} else {
			w.log.Info("VM state changed", "from", from, "to", r)
			w.onChange(from, r)
		}
	}
	return r
}

// Read maps a `status` verb's answer to a state: an error or a non-zero
// exit is unreachable; a "lock:" line (qm status --verbose) is locked;
// otherwise the word after "status:" (running, or anything else: stopped).
// An answer with no status line is unreachable.
func Read(res ipc.Result, err error) State {
	if err != nil || res.ExitCode != 0 {
		return Unreachable
	}
	status, locked := "", false
	for _, line := range strings.Split(res.Output, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch strings.TrimSpace(k) {
		case "status":
			if status == "" {
				status = v
			}
		case "lock":
			if v != "" {
				locked = true
			}
		}
	}
	switch {
	case status == "":
		return Unreachable
	case locked:
		return Locked
	case status == "running":
		return Running
	}
	return Stopped
}
