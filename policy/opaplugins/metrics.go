package opaplugins

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

type promMetrics struct {
	loads      *prometheus.CounterVec
	revision   *prometheus.GaugeVec
	logDropped prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*promMetrics, error) {
	m := &promMetrics{
		loads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_bundle_loads_total",
			Help: "Downloads of policy bundles by result: success (a new bundle decides), refused (it does not compile for sluice; the last good decides), error (download, signature or OPA activation failed; the last good decides), unchanged.",
		}, []string{"result"}),
		revision: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sluice_policy_bundle_info",
			Help: "The policy bundles deciding now (value 1), by bundle name and manifest revision.",
		}, []string{"bundle", "revision"}),
		logDropped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_policy_decision_logs_dropped_total",
			Help: "Decisions not handed to the OPA decision-log plugin (queue full or bad event).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.loads, m.revision, m.logDropped} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, err
			}
		}
	}
	return m, nil
}
