package keyholder

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/ipc"
	"breakglass/internal/verbs"
)

// Keyholder runs verbs on the Proxmox host and answers the verb API.
type Keyholder struct {
	vmid     int
	timeout  time.Duration
	pve      *pveClient
	devvm    ssh.Signer
	log      hclog.Logger
	metrics  *metrics
	gatherer prometheus.Gatherer
	now      func() time.Time
	// answerTimeout bounds writing an answer once it is known.
	answerTimeout time.Duration

	// mutating holds one token while a mutating verb runs.
	mutating chan struct{}
	// slots holds one token per verb running, up to MaxConcurrentVerbs.
	slots chan struct{}

	// life ends every running verb when the keyholder closes.
	life     context.Context
	stopLife context.CancelFunc

	// mu protects the following.
	mu      sync.Mutex
	closed  bool
	running sync.WaitGroup
}

// Caller is who asked for a verb, as the audit line records it.
type Caller struct {
	// Actor is what the caller says it acts for (e.g. "operator:alice").
	Actor string
	// Cred is what the kernel says the caller is.
	Cred ipc.Cred
}

// New checks cfg, reads and checks the key files and known_hosts (refusing
// with an error naming the file), and registers the metrics. Nothing is
// dialled.
func New(cfg Config) (*Keyholder, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	ld, err := cfg.load()
	if err != nil {
		return nil, err
	}
	reg, gath := cfg.Registerer, cfg.Gatherer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, gath = r, r
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	k := &Keyholder{
		vmid:    cfg.VMID,
		timeout: cfg.VerbTimeout,
		pve: &pveClient{
			addr:     cfg.PVE.Addr(),
			user:     cfg.PVE.User,
			signer:   ld.pveSigner,
			hostKeys: ld.hostKeys,
			algos:    ld.pveAlgos,
		},
		devvm:    ld.devvmSigner,
		log:      cfg.Logger,
		metrics:  m,
		gatherer: gath,
		now:      cfg.Now,
		mutating: make(chan struct{}, 1),
		slots:    make(chan struct{}, MaxConcurrentVerbs),

		answerTimeout: defaultAnswerTimeout,
	}
	if k.vmid == 0 {
		k.vmid = verbs.DefaultVMID
	}
	if k.timeout == 0 {
		k.timeout = DefaultVerbTimeout
	}
	if k.log == nil {
		k.log = hclog.NewNullLogger()
	}
	if k.now == nil {
		k.now = time.Now
	}
	k.life, k.stopLife = context.WithCancel(context.Background())
	return k, nil
}

// ConnectionRefused counts one keyholder.sock connection closed over the
// connection cap (ipc.ServerConfig.OnRefused).
func (k *Keyholder) ConnectionRefused() { k.metrics.connRefused.Inc() }

// VMID returns the VM id the verbs act on.
func (k *Keyholder) VMID() int { return k.vmid }

// DevVMSigner returns the devvm key, for the agent on agent.sock. The PVE
// key is never handed out.
func (k *Keyholder) DevVMSigner() ssh.Signer { return k.devvm }

// Close ends running verbs (their SSH connections are closed) and waits for
// them. Later Runs fail with ErrClosed.
func (k *Keyholder) Close() {
	k.mu.Lock()
	k.closed = true
	k.mu.Unlock()
	k.stopLife()
	k.running.Wait()
}

// enter registers a run unless the keyholder is closed.
func (k *Keyholder) enter() bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return false
	}
	k.running.Add(1)
	return true
}

// Run runs verb on the Proxmox host for caller. A name verbs.Parse refuses
// is refused (wrapping verbs.ErrUnknown) before any I/O. A verb while
// MaxConcurrentVerbs run fails with ErrTooMany, a mutating verb while
// another runs with ErrBusy; the line saying a mutating verb
// starts is logged before it is sent. Once started, a verb is not abandoned
// because its caller went away: it ends when the remote command does, at
// the verb timeout (ErrTimeout), or when the keyholder closes.
//
// The Result is filled when the remote command ran (its exit code may be
// non-zero); on error only Verb, VMID and DurationMS are set.
func (k *Keyholder) Run(verb string, caller Caller) (ipc.Result, error) {
	v, err := verbs.Parse(verb)
	if err != nil {
		k.metrics.verbs.WithLabelValues(invalidVerb, string(OutcomeRefused)).Inc()
		return ipc.Result{VMID: k.vmid}, err
	}
	name := string(v.Name)
	res := ipc.Result{Verb: name, VMID: k.vmid}
	count := func(exit int, err error) {
		k.metrics.verbs.WithLabelValues(name, string(outcomeOf(exit, err))).Inc()
	}
	if !k.enter() {
		count(0, ErrClosed)
		return res, ErrClosed
	}
	defer k.running.Done()
	select {
	case k.slots <- struct{}{}:
		defer func() { <-k.slots }()
	default:
		count(0, ErrTooMany)
		return res, ErrTooMany
	}
	if v.Mutating {
		select {
		case k.mutating <- struct{}{}:
			defer func() { <-k.mutating }()
		default:
			count(0, ErrBusy)
			return res, ErrBusy
		}
		// WARNING: this line must be written before the verb is sent, so
		// the audit trail shows an attempt even if the keyholder dies
		// mid-verb. TestAuditMutatingStartsBeforeRun guards the order.
		k.log.Info("mutating verb starts", "verb", name, "vmid", k.vmid,
			"actor", caller.Actor, "uid", caller.Cred.UID, "pid", caller.Cred.PID)
	}

	ctx, cancel := context.WithTimeout(k.life, k.timeout)
	defer cancel()
	out := newCapWriter(MaxOutput)
	start := k.now()
	exit, err := k.pve.run(ctx, name, out)
	elapsed := k.now().Sub(start)
	res.DurationMS = elapsed.Milliseconds()
	count(exit, err)
	k.metrics.duration.WithLabelValues(name).Observe(elapsed.Seconds())
	if err != nil {
		if k.life.Err() != nil {
			err = fmt.Errorf("%w: %w", ErrClosed, err)
		}
		return res, err
	}
	res.ExitCode = exit
	res.Output, res.Truncated = out.result()
	return res, nil
}
