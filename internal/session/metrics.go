package session

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"breakglass/internal/event"
)

// Metrics are the session collectors of the README (Metrics).
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
	// Permissions is breakglass_permissions_total{tool,outcome}: claude's
	// permission requests asked of the operator, and how each ended
	// (allowed, denied, expired), by tool.
	Permissions *prometheus.CounterVec
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
		Permissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "breakglass_permissions_total",
			Help: "Tool calls claude asked permission for: asked (of the operator), allowed, denied, expired; by tool (Bash, Read, Grep, Glob, other).",
		}, []string{"tool", "outcome"}),
	}
	for _, c := range []prometheus.Collector{m.Turns, m.TurnDuration, m.TurnsRunning, m.Sessions, m.Subscribers, m.Permissions} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register session metrics: %w", err)
		}
	}
	for _, o := range event.Outcomes() {
		m.Turns.WithLabelValues(string(o))
	}
	return m, nil
}
