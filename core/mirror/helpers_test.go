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
