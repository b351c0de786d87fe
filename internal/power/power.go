package power

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/event"
	"breakglass/internal/ipc"
	"breakglass/internal/turntoken"
	"breakglass/internal/uuid"
	"breakglass/internal/verbs"
)

// ActorKind says who asked for a verb: the operator (UI or API) or the agent
// (the `pve` command during a turn).
type ActorKind string

// The two kinds of actor. Metrics carry them as the actor_kind label.
const (
	Operator ActorKind = "operator"
	Agent    ActorKind = "agent"
)

// Actor is who asked for a verb.
type Actor struct {
	// Kind is Operator or Agent; anything else is refused.
	Kind ActorKind
	// Name is the operator's authenticated user name. For the agent it is
	// ignored: the agent is always written "agent" in the transcript.
	Name string
}

// transcriptName is the actor as the `verb` event shows it.
func (a Actor) transcriptName() string {
	if a.Kind == Agent {
		return string(Agent)
	}
	return a.Name
}

// keyholderName is the actor as the keyholder's audit line records it.
func (a Actor) keyholderName(sessionID string) string {
	if a.Kind == Agent {
		return "agent:" + sessionID
	}
	return "operator:" + a.Name
}

// Policy is what happens to the agent's mutating verbs
// (BREAKGLASS_AGENT_MUTATING_VERBS).
type Policy string

// The three policies. The zero Policy means PolicyApprove, never allow.
const (
	// PolicyApprove posts an `approval` event and waits for the operator.
	PolicyApprove Policy = "approve"
	// PolicyAllow runs the agent's mutating verbs at once.
	PolicyAllow Policy = "allow"
	// PolicyDeny refuses them at once.
	PolicyDeny Policy = "deny"
)

// ErrBadPolicy is returned by ParsePolicy and New for an unknown policy.
var ErrBadPolicy = errors.New("invalid agent mutating verbs policy")

// ParsePolicy reads a BREAKGLASS_AGENT_MUTATING_VERBS value. Empty means
// approve; anything but approve, allow or deny is refused.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case "":
		return PolicyApprove, nil
	case PolicyApprove, PolicyAllow, PolicyDeny:
		return p, nil
	}
	return "", fmt.Errorf("%w %q: must be approve, allow or deny", ErrBadPolicy, s)
}

// Defaults and bounds of Config.
const (
	// DefaultApprovalTimeout is how long an agent's mutating verb waits
	// for the operator under PolicyApprove.
	DefaultApprovalTimeout = 5 * time.Minute
	// MaxApprovalTimeout bounds ApprovalTimeout.
	MaxApprovalTimeout = time.Hour
	// DefaultVerbTimeout bounds one keyholder call. The keyholder has its
	// own timeout (BREAKGLASS_PVE_VERB_TIMEOUT_SECONDS, 120 s by default)
	// and answers 504 first; this is the web's backstop.
	DefaultVerbTimeout = 3 * time.Minute
	// keptResolved is how many resolved approvals are remembered, so a
	// late tap answers 409 rather than 404.
	keptResolved = 256
)

// Config configures a Service. Its zero value is safe: policy approve, the
// default timeouts, no logging, metrics on a private registry. Keyholder and
// Transcript are required.
type Config struct {
	// Keyholder runs verbs; *ipc.Client in the web.
	Keyholder Keyholder
	// Transcript receives the `verb` and `approval` events; the session
	// manager in the web.
	Transcript Transcript
	// Policy applies to the agent's mutating verbs; zero means approve.
	Policy Policy
	// ApprovalTimeout is how long an approval waits for the operator
	// before it expires; zero means DefaultApprovalTimeout.
	ApprovalTimeout time.Duration
	// VerbTimeout bounds one keyholder call; zero means DefaultVerbTimeout.
	VerbTimeout time.Duration
	// Logger receives one line per verb request and per approval; nil
	// means no logging.
	Logger hclog.Logger
	// Metrics are the verb collectors. Nil means NewMetrics(Registerer).
	Metrics *Metrics
	// Registerer is where NewMetrics registers when Metrics is nil; nil
	// means a private registry nobody scrapes.
	Registerer prometheus.Registerer
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// SessionsDir is BREAKGLASS_SESSIONS_DIR: a screenshot run in a session
	// is stored in <SessionsDir>/<id>/images/ (the web's own copy) and
	// served from there. "" stores none.
	SessionsDir string
	// Health checks the rungs of GET /api/vm/health that are not verbs:
	// SSH returns nil when `ssh devvm true` works. Nil reports the rung as
	// not checked.
	SSH func(ctx context.Context) error
	// HealthBudget bounds one check of the health ladder; 0 means
	// DefaultHealthBudget (tests shorten it).
	HealthBudget time.Duration
	// Tokens are the agent's live per-turn tokens, the only credential of
	// its endpoint; nil means a private set (no agent gets in).
	Tokens *turntoken.Set
}

// MaxWait is the longest one agent request may take under c: the approval
// wait plus one keyholder call, with the defaults of zero fields. The `pve`
// command should wait a little longer.
func (c Config) MaxWait() time.Duration {
	a, v := c.ApprovalTimeout, c.VerbTimeout
	if a == 0 {
		a = DefaultApprovalTimeout
	}
	if v == 0 {
		v = DefaultVerbTimeout
	}
	return a + v
}

// Transcript is where the verb and approval events of a session go. The
// session manager satisfies it.
type Transcript interface {
	Append(sessionID string, e event.Event) error
}

// Service runs power verbs for the operator and the agent, and applies the
// approval policy.
type Service struct {
	kh              Keyholder
	transcript      Transcript
	policy          Policy
	approvalTimeout time.Duration
	verbTimeout     time.Duration
	log             hclog.Logger
	metrics         *Metrics
	now             func() time.Time
	tokens          *turntoken.Set
	sessionsDir     string
	ssh             func(ctx context.Context) error
	healthBudget    time.Duration
	health          healthCache

	// presence remembers whether the keyholder requires presence.
	presence presenceMode

	// mu protects the following.
	mu        sync.Mutex
	approvals map[string]*approval
	resolved  []string // ids of resolved approvals still in approvals, oldest first
}

// New validates cfg and returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Keyholder == nil {
		return nil, errors.New("vm: Config.Keyholder is required")
	}
	if cfg.Transcript == nil {
		return nil, errors.New("vm: Config.Transcript is required")
	}
	policy, err := ParsePolicy(string(cfg.Policy))
	if err != nil {
		return nil, fmt.Errorf("vm: %w", err)
	}
	s := &Service{
		kh:              cfg.Keyholder,
		transcript:      cfg.Transcript,
		policy:          policy,
		approvalTimeout: cfg.ApprovalTimeout,
		verbTimeout:     cfg.VerbTimeout,
		log:             cfg.Logger,
		metrics:         cfg.Metrics,
		now:             cfg.Now,
		tokens:          cfg.Tokens,
		approvals:       map[string]*approval{},
		sessionsDir:     cfg.SessionsDir,
		ssh:             cfg.SSH,
		healthBudget:    cfg.HealthBudget,
	}
	if s.healthBudget <= 0 {
		s.healthBudget = DefaultHealthBudget
	}
	if s.tokens == nil {
		s.tokens = &turntoken.Set{}
	}
	switch {
	case s.approvalTimeout == 0:
		s.approvalTimeout = DefaultApprovalTimeout
	case s.approvalTimeout < 0 || s.approvalTimeout > MaxApprovalTimeout:
		return nil, fmt.Errorf("vm: approval timeout %v: must be between 0 and %v", s.approvalTimeout, MaxApprovalTimeout)
	}
	switch {
	case s.verbTimeout == 0:
		s.verbTimeout = DefaultVerbTimeout
	case s.verbTimeout < 0:
		return nil, fmt.Errorf("vm: verb timeout %v: must not be negative", s.verbTimeout)
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.metrics == nil {
		reg := cfg.Registerer
		if reg == nil {
			reg = prometheus.NewRegistry()
		}
		if s.metrics, err = NewMetrics(reg); err != nil {
			return nil, fmt.Errorf("vm: %w", err)
		}
	}
	return s, nil
}

// Policy returns the policy in force for the agent's mutating verbs.
func (s *Service) Policy() Policy { return s.policy }

// ApprovalTimeout returns how long an approval waits for the operator.
func (s *Service) ApprovalTimeout() time.Duration { return s.approvalTimeout }

// MaxWait is the longest one agent request may take: the approval wait
// plus one keyholder call. The `pve` command should wait a little longer.
func (s *Service) MaxWait() time.Duration { return s.approvalTimeout + s.verbTimeout }

// Sentinel errors of Run, checked with errors.Is. Errors from the keyholder
// are the keyholder client's (*ipc.StatusError, ipc.ErrUnreachable); a bad
// verb wraps verbs.ErrUnknown.
var (
	// ErrRefused: the policy is deny and the agent asked for a mutating verb.
	ErrRefused = errors.New("refused: the agent may not run mutating verbs")
	// ErrDenied: the operator denied the approval.
	ErrDenied = errors.New("denied by the operator")
	// ErrExpired: nobody answered the approval in time, or the agent's
	// turn ended while it waited.
	ErrExpired = errors.New("approval expired: the operator did not answer in time")
	// ErrBadActor: the actor's kind is unknown, or an operator has no name.
	ErrBadActor = errors.New("invalid actor")
	// ErrBadSession: a session id that is not a UUID v4, or an agent
	// without a session.
	ErrBadSession = errors.New("invalid session id")
)

// Run runs one verb for actor and records it in session sessionID (none when
// empty; the agent always has one). The verb is checked with verbs.Parse
// before anything else happens. An agent's mutating verb is subject to the
// policy: under approve Run posts an `approval` event and blocks until the
// operator resolves it, it expires, or ctx ends.
func (s *Service) Run(ctx context.Context, sessionID, verb string, actor Actor) (Result, error) {
	return s.RunRequest(ctx, sessionID, verb, actor, Request{})
}

// RunArgs is Run with args: guest-exec's argv (checked with
// verbs.ValidateArgs before anything else happens; the approval shows it),
// nil for every other verb, which refuses any (errors wrap verbs.ErrArgs).
func (s *Service) RunArgs(ctx context.Context, sessionID, verb string, args []string, actor Actor) (Result, error) {
	return s.RunRequest(ctx, sessionID, verb, actor, Request{Args: args})
}

// Request is what a verb request carries besides its verb: guest-exec's
// argv and the operator's presence (a WebAuthn assertion over a keyholder
// challenge for exactly this verb and argv).
type Request struct {
	Args     []string
	Presence *ipc.Presence
}

// RunRequest is Run with the request's argv and presence. An agent's
// mutating verb never carries presence of its own: under approve it runs
// with the presence the operator gave with his approval.
func (s *Service) RunRequest(ctx context.Context, sessionID, verb string, actor Actor, req Request) (Result, error) {
	if actor.Kind == Agent {
		req.Presence = nil
	}
	args := req.Args
	v, err := verbs.Parse(verb)
	if err != nil {
		s.metrics.observe("", actor.Kind, outcomeInvalid)
		return Result{}, err
	}
	if err := v.CheckArgs(args); err != nil {
		s.metrics.observe("", actor.Kind, outcomeInvalid)
		return Result{}, err
	}
	switch {
	case actor.Kind != Operator && actor.Kind != Agent:
		return Result{}, fmt.Errorf("%w: kind %q", ErrBadActor, actor.Kind)
	case actor.Kind == Operator && actor.Name == "":
		return Result{}, fmt.Errorf("%w: operator without a name", ErrBadActor)
	case actor.Kind == Agent && sessionID == "":
		return Result{}, fmt.Errorf("%w: the agent always acts in a session", ErrBadSession)
	case sessionID != "" && !uuid.Valid(sessionID):
		return Result{}, ErrBadSession
	}
	name := string(v.Name)
	start := s.now()
	if actor.Kind == Agent && v.Mutating {
		switch s.policy {
		case PolicyDeny:
			err = ErrRefused
		case PolicyApprove:
			req.Presence, err = s.await(ctx, sessionID, v.Name, args)
		}
		if err != nil {
			s.finish(sessionID, name, args, actor, start, Result{}, err)
			return Result{}, err
		}
	}
	kctx, cancel := context.WithTimeout(ctx, s.verbTimeout)
	defer cancel()
	callStart := s.now()
	res, err := s.call(kctx, name, actor.keyholderName(sessionID), req)
	s.metrics.Duration.WithLabelValues(name).Observe(s.now().Sub(callStart).Seconds())
	if err == nil && res.ContentType != "" {
		res.Image = s.storeImage(sessionID, res)
	}
	s.finish(sessionID, name, args, actor, start, res, err)
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// finish counts, logs and records one verb request that passed verbs.Parse.
func (s *Service) finish(sessionID, verb string, args []string, actor Actor, start time.Time, res Result, err error) {
	outcome := outcomeOf(res, err)
	s.metrics.observe(verb, actor.Kind, outcome)
	data := event.VerbData{Verb: verb, Actor: actor.transcriptName(), Args: args}
	if err != nil {
		data.Error = err.Error()
		data.DurationMS = s.now().Sub(start).Milliseconds()
		s.log.Warn("verb not run", "verb", verb, "actor_kind", actor.Kind, "actor", actor.transcriptName(),
			"session_id", sessionID, "outcome", outcome, "error", err)
	} else {
		code := res.ExitCode
		data.ExitCode = &code
		data.Output = res.Output
		data.DurationMS = res.DurationMS
		if res.ContentType != "" {
			// The picture is in the session's folder, not in the log.
			data.Image = res.Image
			if data.Image == "" {
				data.Output = "(a " + res.ContentType + " of " + strconv.Itoa(base64.StdEncoding.DecodedLen(len(res.OutputBase64))) + " bytes, not stored: no session)"
			}
		}
		s.log.Info("verb ran", "verb", verb, "actor_kind", actor.Kind, "actor", actor.transcriptName(),
			"session_id", sessionID, "outcome", outcome, "exit_code", res.ExitCode, "duration_ms", res.DurationMS)
	}
	s.emit(sessionID, event.New(event.Verb, data))
}

// emit appends e to the session's transcript, if there is a session.
func (s *Service) emit(sessionID string, e event.Event) {
	if sessionID == "" {
		return
	}
	if err := s.transcript.Append(sessionID, e); err != nil {
		s.log.Warn("transcript append", "session_id", sessionID, "event", e.Type, "error", err)
	}
}
