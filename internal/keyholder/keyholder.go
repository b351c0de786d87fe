package keyholder

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"breakglass/internal/ipc"
	"breakglass/internal/presence"
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

	// presence verifies operator presence; nil when presence is off.
	presence *presence.Verifier
	// operatorsPath is where an enrollment appends its line.
	operatorsPath string

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
	// Presence is the operator's assertion for this verb, required for a
	// mutating verb unless presence is off.
	Presence *ipc.Presence
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
	if cfg.Presence != presence.ModeOff {
		k.operatorsPath = cfg.OperatorsPath
		k.presence, err = presence.New(presence.Config{
			RPID: cfg.RPID, Origins: cfg.Origins, Operators: ld.operators, Now: k.now,
		})
		if err != nil {
			return nil, err
		}
		if cfg.Enroll {
			code, expires, err := k.presence.OpenEnrollment()
			if err != nil {
				return nil, err
			}
			// The code goes to the keyholder's own log only, which the web
			// cannot read; whoever installs the pod types it on his phone.
			k.log.Warn("enrollment open: type this code on the Enroll page", "code", code,
				"expires_at", expires.UTC().Format(time.RFC3339), "tries", presence.EnrollmentTries)
		}
		k.log.Info("operator presence required", "operators", k.presence.Operators(), "rp_id", cfg.RPID, "origins", cfg.Origins)
	} else {
		k.log.Warn("OPERATOR PRESENCE IS OFF: mutating verbs run for anyone who can reach keyholder.sock (BREAKGLASS_PRESENCE=off)")
	}
	k.life, k.stopLife = context.WithCancel(context.Background())
	return k, nil
}

// ConnectionRefused counts one keyholder.sock connection closed over the
// connection cap (ipc.ServerConfig.OnRefused).
func (k *Keyholder) ConnectionRefused() { k.metrics.connRefused.Inc() }

// PresenceMode returns whether mutating verbs need an operator's passkey.
func (k *Keyholder) PresenceMode() presence.Mode {
	if k.presence == nil {
		return presence.ModeOff
	}
	return presence.ModeRequired
}

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

// Run runs a verb without arguments; see RunArgs.
func (k *Keyholder) Run(verb string, caller Caller) (ipc.Result, error) {
	return k.RunArgs(verb, nil, caller)
}

// RunArgs runs verb with args (guest-exec's argv; nil for every other verb,
// which refuses any, wrapping verbs.ErrArgs) on the Proxmox host for caller. A name verbs.Parse refuses
// is refused (wrapping verbs.ErrUnknown) before any I/O. A verb while
// MaxConcurrentVerbs run fails with ErrTooMany, a mutating verb while
// another runs with ErrBusy; the line saying a mutating verb
// starts is logged before it is sent. Once started, a verb is not abandoned
// because its caller went away: it ends when the remote command does, at
// the verb timeout (ErrTimeout), or when the keyholder closes.
//
// The Result is filled when the remote command ran (its exit code may be
// non-zero); on error only Verb, VMID and DurationMS are set.
func (k *Keyholder) RunArgs(verb string, args []string, caller Caller) (ipc.Result, error) {
	v, err := verbs.Parse(verb)
	if err != nil {
		k.metrics.verbs.WithLabelValues(invalidVerb, string(OutcomeRefused)).Inc()
		return ipc.Result{VMID: k.vmid}, err
	}
	name := string(v.Name)
	// The line pve-gate reads: the verb name, or guest-exec's encoding of
	// its argv, which EncodeLine checks first.
	line, err := verbs.EncodeLine(v, args)
	if err != nil {
		k.metrics.verbs.WithLabelValues(name, string(OutcomeBadRequest)).Inc()
		return ipc.Result{Verb: name, VMID: k.vmid}, err
	}
	res := ipc.Result{Verb: name, VMID: k.vmid}
	count := func(exit int, err error) {
		k.metrics.verbs.WithLabelValues(name, string(outcomeOf(exit, err))).Inc()
	}
	if v.Mutating {
		// WARNING: presence is checked before anything is dialled or
		// reserved; a refusal never reaches SSH (TestPresenceRefusals).
		op, err := k.checkPresence(name, args, caller.Presence)
		if err != nil {
			count(0, err)
			return res, err
		}
		res.Operator = op
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
		fields := []any{"verb", name, "vmid", k.vmid,
			"operator", res.Operator, "presence", string(k.PresenceMode()),
			"actor", caller.Actor, "uid", caller.Cred.UID, "pid", caller.Cred.PID}
		if args != nil {
			fields = append(fields, "args", args)
		}
		k.log.Info("mutating verb starts", fields...)
	}

	ctx, cancel := context.WithTimeout(k.life, k.timeout)
	defer cancel()
	start := k.now()
	var (
		exit int
		out  *capWriter
		bin  *capWriter // binary stdout (screenshot), kept apart from stderr
	)
	if v.ContentType != "" {
		// One byte over the cap tells "at the cap" from "over it".
		bin, out = newCapWriter(v.MaxOutput+1), newCapWriter(MaxOutput)
		exit, err = k.pve.run(ctx, line, bin, out)
	} else {
		out = newCapWriter(min(v.MaxOutput, MaxOutput))
		exit, err = k.pve.run(ctx, line, out, out)
	}
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
	if bin != nil && exit == 0 {
		return k.binaryResult(res, v, bin)
	}
	if bin != nil {
		// A failed screenshot says why on stderr; its stdout is not text.
		res.Output, res.Truncated = out.result()
		return res, nil
	}
	res.Output, res.Truncated = out.result()
	return res, nil
}

// ErrOutputTooLarge: a binary output (screenshot) went over its verb's cap;
// it is refused, never cut (502).
var ErrOutputTooLarge = errors.New("output over its cap")

// ErrBadOutput: a binary output is not what its content type says (502).
var ErrBadOutput = errors.New("output is not of its content type")

// pngMagic starts every PNG (RFC 2083 §3.1).
const pngMagic = "\x89PNG\r\n\x1a\n"

// binaryResult fills res with bin's bytes, base64, when they are within
// v's cap and of v's content type.
func (k *Keyholder) binaryResult(res ipc.Result, v verbs.Verb, bin *capWriter) (ipc.Result, error) {
	bin.mu.Lock()
	b, dropped := bin.buf, bin.dropped
	bin.mu.Unlock()
	if len(b) > v.MaxOutput || dropped > 0 {
		return res, fmt.Errorf("%w: %s answered more than %d bytes", ErrOutputTooLarge, v.Name, v.MaxOutput)
	}
	if v.ContentType == verbs.ContentTypePNG && !bytes.HasPrefix(b, []byte(pngMagic)) {
		return res, fmt.Errorf("%w: %s answered %d bytes that are not a PNG", ErrBadOutput, v.Name, len(b))
	}
	res.ContentType = v.ContentType
	res.OutputBase64 = base64.StdEncoding.EncodeToString(b)
	return res, nil
}
