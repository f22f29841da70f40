package mirror_test

import (
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-oci/sluice/core/metrics"
)

func testutilCount(m *metrics.Metrics) float64 {
	var out dto.Metric
	c, err := m.BytesFetched.GetMetricWithLabelValues("peer")
	if err != nil {
		return 0
	}
	if err := c.Write(&out); err != nil {
		return 0
	}
	return out.GetCounter().GetValue()
}
