package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

// monitoringDir is the kustomize Component with the alerts and the dashboard.
const monitoringDir = "k8s/components/monitoring"

// component is the part of a kustomize Component file it uses (strict).
type component struct {
	metav1.TypeMeta    `json:",inline"`
	Resources          []string `json:"resources"`
	ConfigMapGenerator []struct {
		Name    string   `json:"name"`
		Files   []string `json:"files"`
		Options struct {
			DisableNameSuffixHash bool              `json:"disableNameSuffixHash"`
			Labels                map[string]string `json:"labels"`
		} `json:"options"`
	} `json:"configMapGenerator"`
}

// ruleGroups is a Prometheus rule file's content, which is also the spec of
// the prometheus-operator's PrometheusRule.
type ruleGroups struct {
	Groups []struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	} `json:"groups"`
}

type rule struct {
	Alert       string            `json:"alert,omitempty"`
	Record      string            `json:"record,omitempty"`
	Expr        string            `json:"expr"`
	For         string            `json:"for,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              ruleGroups `json:"spec"`
}

// promtoolTests is the part of a `promtool test rules` file this test reads.
type promtoolTests struct {
	Tests []struct {
		AlertRuleTest []struct {
			EvalTime  string           `json:"eval_time"`
			Alertname string           `json:"alertname"`
			ExpAlerts []map[string]any `json:"exp_alerts"`
		} `json:"alert_rule_test"`
	} `json:"tests"`
}

func loadRule(t *testing.T) prometheusRule {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "prometheusrule.yaml"))
	require.NoError(t, err)
	var pr prometheusRule
	require.NoError(t, yaml.UnmarshalStrict(raw, &pr))
	require.Equal(t, "PrometheusRule", pr.Kind)
	require.Equal(t, "monitoring.coreos.com/v1", pr.APIVersion)
	return pr
}

func alerts(pr prometheusRule) []rule {
	var out []rule
	for _, g := range pr.Spec.Groups {
		for _, r := range g.Rules {
			if r.Alert != "" {
				out = append(out, r)
			}
		}
	}
	return out
}

// promtool runs Debian's promtool (package prometheus, installed by
// `make deps-apt`) and fails the test with its output when it fails.
func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	require.NoError(t, err, "promtool is missing: `make deps-apt` installs Debian's prometheus package")
	out, err := exec.Command(bin, args...).CombinedOutput()
	require.NoError(t, err, "promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestMonitoringComponentListsItsFiles(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "kustomization.yaml"))
	require.NoError(t, err)
	var c component
	require.NoError(t, yaml.UnmarshalStrict(raw, &c))
	assert.Equal(t, "Component", c.Kind)
	assert.Equal(t, "kustomize.config.k8s.io/v1alpha1", c.APIVersion)
	assert.Equal(t, []string{"prometheusrule.yaml"}, c.Resources)
	require.Len(t, c.ConfigMapGenerator, 1)
	gen := c.ConfigMapGenerator[0]
	assert.Equal(t, []string{"breakglass.json=grafana-dashboard.json"}, gen.Files)
	assert.Equal(t, "1", gen.Options.Labels["grafana_dashboard"], "Grafana's sidecar finds dashboards by this label")
	assert.True(t, gen.Options.DisableNameSuffixHash)
	// The base must not pull the component in: it needs the operator's CRDs
	// and a Grafana, which not every cluster has.
	base, err := os.ReadFile("k8s/kustomization.yaml")
	require.NoError(t, err)
	assert.NotContains(t, string(base), "components/monitoring")
}

// TestAlertRules runs `promtool check rules` on the PrometheusRule's groups
// and `promtool test rules` with the fixtures in testdata/monitoring, which
// show each alert firing and resolving.
func TestAlertRules(t *testing.T) {
	pr := loadRule(t)
	dir := t.TempDir()
	rules, err := yaml.Marshal(pr.Spec)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "rules.yaml"), rules, 0o600))
	fixtures, err := os.ReadFile("testdata/monitoring/alerts_test.yaml")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "alerts_test.yaml"), fixtures, 0o600))

	promtool(t, "check", "rules", filepath.Join(dir, "rules.yaml"))
	promtool(t, "test", "rules", filepath.Join(dir, "alerts_test.yaml"))

	// Every alert has fixtures, and they show it both firing and, at a
	// later time, resolved.
	var pt promtoolTests
	require.NoError(t, yaml.Unmarshal(fixtures, &pt))
	for _, a := range alerts(pr) {
		t.Run(a.Alert, func(t *testing.T) {
			firedAt := ""
			resolved := false
			for _, tc := range pt.Tests {
				for _, at := range tc.AlertRuleTest {
					if at.Alertname != a.Alert {
						continue
					}
					if len(at.ExpAlerts) > 0 && firedAt == "" {
						firedAt = at.EvalTime
					}
					if len(at.ExpAlerts) == 0 && firedAt != "" {
						resolved = true
					}
				}
			}
			assert.NotEmpty(t, firedAt, "no fixture shows %s firing", a.Alert)
			assert.True(t, resolved, "no fixture shows %s resolving after it fired", a.Alert)
			assert.Contains(t, []string{"critical", "warning"}, a.Labels["severity"])
			assert.NotEmpty(t, a.Annotations["summary"])
			assert.NotEmpty(t, a.Annotations["description"])
		})
	}
}

// dashboard is the part of Grafana's dashboard JSON this test reads.
type dashboard struct {
	UID    string `json:"uid"`
	Panels []struct {
		Title   string `json:"title"`
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// TestDashboardQueriesParse has promtool parse every dashboard query (as a
// recording rule, with Grafana's variables given values).
func TestDashboardQueriesParse(t *testing.T) {
	d := loadDashboard(t)
	vars := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*")
	var g ruleGroups
	g.Groups = append(g.Groups, struct {
		Name  string `json:"name"`
		Rules []rule `json:"rules"`
	}{Name: "dashboard"})
	for _, p := range d.Panels {
		require.NotEmpty(t, p.Targets, p.Title)
		for _, tg := range p.Targets {
			g.Groups[0].Rules = append(g.Groups[0].Rules, rule{Record: "dashboard:query", Expr: vars.Replace(tg.Expr)})
		}
	}
	raw, err := yaml.Marshal(g)
	require.NoError(t, err)
	f := filepath.Join(t.TempDir(), "dashboard-rules.yaml")
	require.NoError(t, os.WriteFile(f, raw, 0o600))
	promtool(t, "check", "rules", f)
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	require.NoError(t, err)
	var d dashboard
	require.NoError(t, json.Unmarshal(raw, &d))
	require.Equal(t, "breakglass", d.UID)
	require.NotEmpty(t, d.Panels)
	return d
}

// TestMonitoringUsesDocumentedMetrics: every metric the alerts and the
// dashboard query is in the README's list, so a renamed metric cannot
// silently blank a panel or an alert.
func TestMonitoringUsesDocumentedMetrics(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	var exprs []string
	for _, a := range alerts(loadRule(t)) {
		exprs = append(exprs, a.Expr)
	}
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	name := regexp.MustCompile(`\b(?:breakglass|keyholder)_[a-z0-9_]+`)
	var seen []string
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			for _, suffix := range []string{"_bucket", "_count", "_sum"} {
				m = strings.TrimSuffix(m, suffix)
			}
			if !slices.Contains(seen, m) {
				seen = append(seen, m)
			}
		}
	}
	require.NotEmpty(t, seen)
	for _, m := range seen {
		assert.True(t, strings.Contains(string(readme), "`"+m), "%s is queried but not in the README's Metrics list", m)
	}
}
