package sshagent

import "github.com/prometheus/client_golang/prometheus"

// Outcome is the result of a sign or bind decision, as it appears in audit
// lines and in the outcome label of the metrics.
type Outcome string

// Outcomes. A sign request gets exactly one; a bind gets OutcomeBound or
// one of the refusals.
const (
	OutcomeSigned     Outcome = "signed"
	OutcomeBound      Outcome = "bound"
	OutcomeUnbound    Outcome = "unbound"
	OutcomeWrongHost  Outcome = "wrong_host"
	OutcomeWrongUser  Outcome = "wrong_user"
	OutcomeForwarding Outcome = "forwarding"
	OutcomeMalformed  Outcome = "malformed"
)

// signOutcomes are the values of keyholder_agent_signs_total{outcome}.
var signOutcomes = []Outcome{OutcomeSigned, OutcomeUnbound, OutcomeWrongHost, OutcomeWrongUser, OutcomeForwarding, OutcomeMalformed}

// bindOutcomes are the values of keyholder_agent_binds_total{outcome}.
var bindOutcomes = []Outcome{OutcomeBound, OutcomeWrongHost, OutcomeForwarding, OutcomeMalformed}

// request names a refused request in audit lines and in
// keyholder_agent_refused_total{request}.
type request string

const (
	requestAdd        request = "add"
	requestRemove     request = "remove"
	requestRemoveAll  request = "remove_all"
	requestLock       request = "lock"
	requestUnlock     request = "unlock"
	requestExtension  request = "extension"
	requestUnknown    request = "unknown"
	requestConnection request = "connection"
)

var refusedRequests = []request{requestAdd, requestRemove, requestRemoveAll, requestLock, requestUnlock, requestExtension, requestUnknown, requestConnection}

// metrics are the agent's Prometheus series.
type metrics struct {
	signs       *prometheus.CounterVec
	binds       *prometheus.CounterVec
	refused     *prometheus.CounterVec
	connections prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		signs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_agent_signs_total",
			Help: "Sign requests on agent.sock, by decision.",
		}, []string{"outcome"}),
		binds: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_agent_binds_total",
			Help: "session-bind@openssh.com requests on agent.sock, by decision.",
		}, []string{"outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "keyholder_agent_refused_total",
			Help: "Agent requests refused outright (add, remove, lock, unknown extensions and opcodes, connections over the limit).",
		}, []string{"request"}),
		connections: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "keyholder_agent_connections_total",
			Help: "Connections accepted on agent.sock.",
		}),
	}
	for _, o := range signOutcomes {
		m.signs.WithLabelValues(string(o))
	}
	for _, o := range bindOutcomes {
		m.binds.WithLabelValues(string(o))
	}
	for _, r := range refusedRequests {
		m.refused.WithLabelValues(string(r))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.signs, m.binds, m.refused, m.connections} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}
