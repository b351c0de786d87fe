package power

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Outcomes, the outcome label of breakglass_verb_requests_total.
const (
	outcomeSuccess     = "success"          // ran, exit code 0
	outcomeFailed      = "failed"           // ran, non-zero exit code
	outcomeInvalid     = "invalid"          // not a verb (the verb label is "invalid" too)
	outcomeRefused     = "refused"          // policy deny
	outcomeDenied      = "denied"           // the operator said no
	outcomeExpired     = "expired"          // nobody answered, or the turn ended
	outcomeTooMany     = "too_many_pending" // approvals already waiting
	outcomeBusy        = "busy"             // keyholder 409
	outcomeTimeout     = "timeout"          // keyholder 504, or the web's backstop
	outcomeSSH         = "ssh_error"        // keyholder 502
	outcomeUnreachable = "unreachable"      // keyholder socket down
	outcomeError       = "error"            // anything else
	invalidVerbLabel   = "invalid"
)

// Metrics are the web's verb collectors (README.md, Metrics).
type Metrics struct {
	// Requests is breakglass_verb_requests_total{verb,actor_kind,outcome}.
	Requests *prometheus.CounterVec
	// Duration is breakglass_verb_duration_seconds{verb}: the keyholder
	// round trip, without the approval wait.
	Duration *prometheus.HistogramVec
}

// NewMetrics creates the verb collectors and registers them on reg. When reg
// already holds collectors of the same names, labels and help (the web's
// metrics package registered them first), those are used instead.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breakglass_verb_requests_total",
		Help: "Power verb requests by verb, actor kind (operator, agent) and outcome.",
	}, []string{"verb", "actor_kind", "outcome"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "breakglass_verb_duration_seconds",
		Help:    "Round trip of a power verb through the keyholder, by verb.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120},
	}, []string{"verb"})
	m := &Metrics{}
	var err error
	if m.Requests, err = register(reg, requests); err != nil {
		return nil, err
	}
	if m.Duration, err = register(reg, duration); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c on reg, or returns the identical collector already
// there.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		existing, ok := are.ExistingCollector.(C)
		if !ok {
			return c, fmt.Errorf("register verb metrics: existing collector is a %T", are.ExistingCollector)
		}
		return existing, nil
	}
	if err != nil {
		return c, fmt.Errorf("register verb metrics: %w", err)
	}
	return c, nil
}

// observe counts one request.
func (m *Metrics) observe(verb string, kind ActorKind, outcome string) {
	if verb == "" {
		verb = invalidVerbLabel
	}
	if kind != Operator && kind != Agent {
		kind = "invalid"
	}
	m.Requests.WithLabelValues(verb, string(kind), outcome).Inc()
}

// outcomeOf names how a request that passed verbs.Parse ended.
func outcomeOf(res Result, err error) string {
	switch {
	case err == nil && res.ExitCode == 0:
		return outcomeSuccess
	case err == nil:
		return outcomeFailed
	case errors.Is(err, ErrRefused):
		return outcomeRefused
	case errors.Is(err, ErrDenied):
		return outcomeDenied
	case errors.Is(err, ErrExpired):
		return outcomeExpired
	case errors.Is(err, ErrTooManyPending):
		return outcomeTooMany
	}
	return keyholderOutcome(err)
}
