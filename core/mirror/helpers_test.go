package mirror_test

import (
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-oci/sluice/core/metrics"
)

func testutilCount(m *metrics.Metrics) float64 {
	c, err := m.BytesFetched.GetMetricWithLabelValues("peer")
	if err != nil {
		return 0
	}
	return counterValue(c)
}

// counterValue reads a counter or gauge.
func counterValue(c prometheus.Metric) float64 {
	var out dto.Metric
	if err := c.Write(&out); err != nil {
		return 0
	}
	if out.Counter != nil {
		return out.GetCounter().GetValue()
	}
	return out.GetGauge().GetValue()
}

// collectedValue reads a collector of one gauge or counter (a
// metrics.ScrapeGauge, read as a scrape would).
func collectedValue(c prometheus.Collector) float64 {
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	return counterValue(<-ch)
}

// providerEvents reads sluice_mirror_peer_provider_events_total{reason}.
func providerEvents(m *metrics.Metrics, reason string) float64 {
	return counterValue(m.PeerProviderEvents.WithLabelValues(reason))
}

// transfers reads sluice_mirror_peer_transfers_total{mode}.
func transfers(m *metrics.Metrics, mode string) float64 {
	return counterValue(m.PeerTransfers.WithLabelValues(mode))
}
