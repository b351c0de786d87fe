package keyholder

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/presence"
	"breakglass/internal/verbs"
)

// Outcome is the outcome label of keyholder_verbs_total and of audit lines.
type Outcome string

// The outcomes of a verb request. The set is fixed so label values stay
// bounded whatever a caller sends.
const (
	OutcomeOK           Outcome = "ok"           // ran, exit code 0
	OutcomeNonzeroExit  Outcome = "nonzero_exit" // ran, exit code not 0
	OutcomeRefused      Outcome = "refused"      // not a verb (verb label "invalid")
	OutcomeBadRequest   Outcome = "bad_request"  // a verb, but a bad body
	OutcomeBusy         Outcome = "busy"         // another mutating verb, or too many verbs, running
	OutcomeHostKey      Outcome = "host_key_mismatch"
	OutcomeSSHError     Outcome = "ssh_error"
	OutcomeUnreachable  Outcome = "unreachable"
	OutcomeTimeout      Outcome = "timeout"
	OutcomeShuttingDown Outcome = "shutting_down"
	// OutcomePresence: refused for want of a valid operator presence.
	OutcomePresence Outcome = "presence_refused"
)

// invalidVerb is the verb label of refused requests: the input itself never
// becomes a label.
const invalidVerb = "invalid"

// metrics holds the keyholder's collectors.
type metrics struct {
	verbs    *prometheus.CounterVec
	duration *prometheus.HistogramVec
	// connRefused counts keyholder.sock connections closed over the cap.
	connRefused prometheus.Counter
	refusals    *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		verbs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_verbs_total",
			Help: "Verb requests on keyholder.sock, by verb and outcome.",
		}, []string{"verb", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "keyholder_verb_duration_seconds",
			Help:    "Time from dialling the Proxmox host to the verb's end, by verb.",
			Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300},
		}, []string{"verb"}),
		connRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyholder_connections_refused_total",
			Help: "Connections to keyholder.sock closed at once because the connection cap was reached.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_presence_refusals_total",
			Help: "Presence checks refused (mutating verbs, logins, enrollments), by reason.",
		}, []string{"reason"}),
	}
	for _, r := range presence.Reasons() {
		m.refusals.WithLabelValues(string(r))
	}
	for _, c := range []prometheus.Collector{m.verbs, m.duration, m.connRefused, m.refusals} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register keyholder metrics: %w", err)
		}
	}
	return m, nil
}

// outcomeOf classifies the end of a verb run.
func outcomeOf(exitCode int, err error) Outcome {
	switch {
	case err == nil && exitCode == 0:
		return OutcomeOK
	case err == nil:
		return OutcomeNonzeroExit
	case errors.Is(err, verbs.ErrUnknown):
		return OutcomeRefused
	case presence.ReasonOf(err) != "":
		return OutcomePresence
	case errors.Is(err, ErrBusy), errors.Is(err, ErrTooMany):
		return OutcomeBusy
	case errors.Is(err, ErrHostKeyMismatch):
		return OutcomeHostKey
	case errors.Is(err, ErrTimeout):
		return OutcomeTimeout
	case errors.Is(err, ErrUnreachable):
		return OutcomeUnreachable
	case errors.Is(err, ErrClosed):
		return OutcomeShuttingDown
	}
	return OutcomeSSHError
}
