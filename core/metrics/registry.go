package metrics

import "github.com/prometheus/client_golang/prometheus"

// newRegistryMetrics creates and registers the collectors of the serving
// side towards peers (core/registry).
func (m *Metrics) newRegistryMetrics(reg prometheus.Registerer) {
	m.PeerRefused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_registry_peer_refused_total",
		Help: "Peer requests refused by reason: busy (a blob GET answered 503 UNAVAILABLE at once because --max-peer-serves blob transfers to peers were running; the peer asks another provider or the upstream).",
	}, []string{"reason"})
	m.PeerRefused.WithLabelValues("busy")
	reg.MustRegister(m.PeerRefused)
}
