package api

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The web's names in the README (Metrics) this package and the session manager
// register (the verb ones come with the power package, claude's stream and
// cost ones with the claude package).
var webMetricNames = []string{
	"breakglass_turns_total",
	"breakglass_turn_duration_seconds",
	"breakglass_turns_running",
	"breakglass_sessions",
	"breakglass_sse_subscribers",
	"breakglass_auth_failures_total",
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	ms := httptest.NewServer(h)
	defer ms.Close()
	resp, err := http.Get(ms.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return string(b)
}

func TestMetricsHandler(t *testing.T) {
	e := start(t, opts{})
	id := e.create(t)
	resp, _ := e.req(t, http.MethodPost, "/api/sessions/"+id+"/prompt", `{"text":"go"}`, nil)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	_, rd := e.attach(t, withTimeout(t), id, -1)
	readUntilDone(t, rd)

	text := scrape(t, e.srv.MetricsHandler())
	for _, name := range webMetricNames {
		assert.Contains(t, text, "\n# TYPE "+name+" ", name)
	}
	assert.Contains(t, text, `breakglass_turns_total{outcome="success"} 1`)
	assert.Contains(t, text, `keyholder_verbs_total{outcome="success",verb="status"} 3`, "the keyholder's metrics, re-exported")
	assert.Contains(t, text, "keyholder_up 1")
	assert.NotContains(t, text, "go_goroutines 7", "only keyholder_ families are re-exported")

	e.kh.setDown(true)
	text = scrape(t, e.srv.MetricsHandler())
	assert.Contains(t, text, "keyholder_up 0")
	assert.NotContains(t, text, "keyholder_verbs_total")
	for _, name := range webMetricNames {
		assert.Contains(t, text, "\n# TYPE "+name+" ", "the web's own metrics still come: %s", name)
	}

	require.NoError(t, testutil.GatherAndCompare(e.reg, strings.NewReader(`
# HELP breakglass_auth_failures_total Requests refused by authentication or the same-origin check, by reason.
# TYPE breakglass_auth_failures_total counter
breakglass_auth_failures_total{reason="bad_token"} 0
breakglass_auth_failures_total{reason="bearer_disabled"} 0
breakglass_auth_failures_total{reason="cross_origin"} 0
breakglass_auth_failures_total{reason="empty_header"} 0
breakglass_auth_failures_total{reason="header_off"} 0
breakglass_auth_failures_total{reason="invalid_header"} 0
breakglass_auth_failures_total{reason="local_peer"} 0
breakglass_auth_failures_total{reason="missing"} 0
breakglass_auth_failures_total{reason="repeated_header"} 0
breakglass_auth_failures_total{reason="untrusted_peer"} 0
`), "breakglass_auth_failures_total"))
}

// TestMetricsNotOnOperatorListener: the operator's handler never answers
// /metrics with Prometheus text, authenticated or not.
func TestMetricsNotOnOperatorListener(t *testing.T) {
	e := start(t, opts{})
	resp, body := e.req(t, http.MethodGet, "/metrics", "", nil)
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	assert.NotContains(t, body, "breakglass_")
	resp, body = e.req(t, http.MethodGet, "/metrics", "", map[string][]string{IdentityHeader: nil})
	assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	assert.NotContains(t, body, "breakglass_")
}
