package session

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/claude"
	"breakglass/internal/event"
)

// Metrics are the session collectors of DESIGN §6.5.
type Metrics struct {
	// Turns is breakglass_turns_total{outcome}.
	Turns *prometheus.CounterVec
	// TurnDuration is breakglass_turn_duration_seconds.
	TurnDuration prometheus.Histogram
	// TurnsRunning is breakglass_turns_running.
	TurnsRunning prometheus.Gauge
	// Sessions is breakglass_sessions.
	Sessions prometheus.Gauge
	// Subscribers is breakglass_sse_subscribers.
	Subscribers prometheus.Gauge
	// CostUSD is breakglass_agent_cost_usd_total, summed from result events.
	CostUSD prometheus.Counter
	// StreamLines is breakglass_stream_lines_total{kind}: claude's stdout
	// lines by kind (known, unknown, invalid), fed by the runner.
	StreamLines *prometheus.CounterVec
}

// NewMetrics creates the session collectors and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		Turns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakglass_turns_total",
			Help: "Claude turns ended, by outcome (success, error, cancelled, timeout).",
		}, []string{"outcome"}),
		TurnDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "breakglass_turn_duration_seconds",
			Help:    "Wall time of a claude turn, from the prompt to its done event.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800},
		}),
		TurnsRunning: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "breakglass_turns_running",
			Help: "Claude turns running now.",
		}),
		Sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "breakglass_sessions",
			Help: "Sessions the web holds.",
		}),
		Subscribers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "breakglass_sse_subscribers",
			Help: "Clients attached to a session's stream now.",
		}),
		CostUSD: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "breakglass_agent_cost_usd_total",
			Help: "Sum of total_cost_usd reported by claude's result lines.",
		}),
		StreamLines: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakglass_stream_lines_total",
			Help: "Lines of claude's stream-json output, by kind (known, unknown, invalid).",
		}, []string{"kind"}),
	}
	for _, c := range []prometheus.Collector{m.Turns, m.TurnDuration, m.TurnsRunning, m.Sessions, m.Subscribers, m.CostUSD, m.StreamLines} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register session metrics: %w", err)
		}
	}
	for _, o := range []string{event.OutcomeSuccess, event.OutcomeError, event.OutcomeCancelled, event.OutcomeTimeout} {
		m.Turns.WithLabelValues(o)
	}
	for _, k := range []claude.LineKind{claude.LineKnown, claude.LineUnknown, claude.LineInvalid} {
		m.StreamLines.WithLabelValues(string(k))
	}
	return m, nil
}
