package mirror

import "errors"

// Values of the reason label of sluice_mirror_peer_provider_events_total
// (metrics.PeerProviderReasons): bounded, never a peer ID.
const (
	reasonTooSlow       = "too_slow"
	reasonSizeDisagrees = "size_disagrees"
	reasonFailed        = "failed"
	reasonQuarantined   = "quarantined"
	reasonUnhealthy     = "unhealthy"
)

// wireMetrics connects the health and quarantine memories to m.metrics:
// the unhealthy counter, and the gauges read at scrape.
func (m *Mirror) wireMetrics() {
	m.health.marked = m.metrics.PeerProviderEvents.WithLabelValues(reasonUnhealthy)
	m.metrics.UnhealthyProviders.Set(func() float64 { return float64(m.health.count()) })
	m.metrics.QuarantinedPeers.Set(func() float64 { return float64(m.quarantine.count()) })
}

// providerEvent counts one provider outcome.
func (m *Mirror) providerEvent(reason string) {
	m.metrics.PeerProviderEvents.WithLabelValues(reason).Inc()
}

// dropReason is the reason a provider was dropped mid-transfer after err.
func dropReason(err error) string {
	if errors.Is(err, errTooSlow) {
		return reasonTooSlow
	}
	return reasonFailed
}
