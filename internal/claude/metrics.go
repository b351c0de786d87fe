package claude

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collectors the runner owns.
type metrics struct {
	// lines is breakglass_stream_lines_total{kind}.
	lines *prometheus.CounterVec
	// cost is breakglass_agent_cost_usd_total.
	cost prometheus.Counter
}

// newMetrics creates the runner's collectors and registers them on reg
// (nil: a private registry nobody scrapes). A collector reg already holds
// (a second runner on one registry) is shared.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	lines, err := register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "breakglass_stream_lines_total",
		Help: "Lines of claude's stream-json output, by kind (known, unknown, invalid).",
	}, []string{"kind"}))
	if err != nil {
		return nil, err
	}
	cost, err := register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "breakglass_agent_cost_usd_total",
		Help: "Sum of total_cost_usd reported by claude's result lines.",
	}))
	if err != nil {
		return nil, err
	}
	for _, k := range []LineKind{LineKnown, LineUnknown, LineInvalid} {
		lines.WithLabelValues(string(k))
	}
	return &metrics{lines: lines, cost: cost}, nil
}

func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		existing, ok := are.ExistingCollector.(C)
		if !ok {
			return c, fmt.Errorf("register claude metrics: existing collector is a %T", are.ExistingCollector)
		}
		return existing, nil
	}
	if err != nil {
		return c, fmt.Errorf("register claude metrics: %w", err)
	}
	return c, nil
}
