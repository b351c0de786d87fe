package api

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// keyholderScrapeTimeout bounds the fetch of the keyholder's metrics.
const keyholderScrapeTimeout = 5 * time.Second

// keyholderPrefix is the only name prefix re-exported from the keyholder, so
// its families never clash with the web's own.
const keyholderPrefix = "keyholder_"

// MetricsHandler serves /metrics for the metrics listener only: the web's
// own collectors, the keyholder's (fetched over its socket at scrape time),
// and keyholder_up, 0 when that fetch fails.
func (s *Server) MetricsHandler() http.Handler {
	g := prometheus.Gatherers{s.gatherer, prometheus.GathererFunc(s.gatherKeyholder)}
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// gatherKeyholder fetches and parses the keyholder's metrics.
func (s *Server) gatherKeyholder() ([]*dto.MetricFamily, error) {
	ctx, cancel := context.WithTimeout(context.Background(), keyholderScrapeTimeout)
	defer cancel()
	up := 0.0
	var out []*dto.MetricFamily
	text, err := s.kh.Metrics(ctx)
	if err != nil {
		s.log.Debug("keyholder metrics unavailable", "error", err)
	} else {
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(bytes.NewReader(text))
		if err != nil {
			s.log.Warn("keyholder metrics unreadable", "error", err)
		} else {
			up = 1
			for name, f := range fams {
				if strings.HasPrefix(name, keyholderPrefix) && name != "keyholder_up" {
					out = append(out, f)
				}
			}
		}
	}
	out = append(out, &dto.MetricFamily{
		Name:   proto.String("keyholder_up"),
		Help:   proto.String("1 when the keyholder's metrics were fetched over its socket for this scrape, else 0."),
		Type:   dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(up)}}},
	})
	return out, nil
}
