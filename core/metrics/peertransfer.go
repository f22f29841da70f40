package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// newPeerTransferMetrics creates the collectors of multi-peer transfers
// and provider outcomes (core/mirror). Label values are bounded: a mode, a
// reason; never a peer, digest or registry.
func (m *Metrics) newPeerTransferMetrics() {
	m.PeerTransfers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_mirror_peer_transfers_total",
		Help: "Blob transfers from peers by mode: single (one provider at a time, resuming on another if it fails) or multi (ranges from several providers at once; blobs of 8 MiB and more with two or more providers).",
	}, []string{"mode"})
	for _, mode := range []string{"single", "multi"} {
		m.PeerTransfers.WithLabelValues(mode)
	}
	m.PeerRangeRequests = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_mirror_peer_range_requests_total",
		Help: "HTTP Range requests sent to providers: chunks of multi-peer transfers, and resumes of a transfer on another provider. Bytes received are sluice_bytes_fetched_total{from=\"peer\"}.",
	})
	m.PeerProviderEvents = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_mirror_peer_provider_events_total",
		Help: "What happened to providers during transfers, by reason: too_slow (cut off for delivering under 256 KiB per idle timeout, stalled or trickling; its range went to another provider), " +
			"size_disagrees (gave another blob size than the first provider; skipped for that blob only), failed (dropped mid-transfer after a connection error, reset, early end or unusable answer), " +
			"quarantined (sent bytes that failed the digest; avoided for the quarantine time), unhealthy (remembered unhealthy after a failure or slow answer; tried after the others for the health TTL). " +
			"A too_slow or failed provider is usually counted as unhealthy too.",
	}, []string{"reason"})
	for _, r := range PeerProviderReasons {
		m.PeerProviderEvents.WithLabelValues(r)
	}
	m.MultiPeerMemoryFalls = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "sluice_mirror_multipeer_memory_fallbacks_total",
		Help: "Blobs eligible for a multi-peer transfer that were fetched from one provider at a time because the node-wide chunk memory for multi-peer transfers (128 MiB by default) was in use by other transfers. A steady rise means the bound is too small for the load.",
	})
	m.UnhealthyProviders = NewScrapeGauge(prometheus.GaugeOpts{
		Name: "sluice_mirror_unhealthy_providers",
		Help: "Providers this node currently remembers as unhealthy (failed or answered slowly within the health TTL); they are tried after the others.",
	})
	m.QuarantinedPeers = NewScrapeGauge(prometheus.GaugeOpts{
		Name: "sluice_mirror_quarantined_peers",
		Help: "Peers this node currently quarantines for having sent bytes that failed their digest; they are not fetched from until the quarantine ends.",
	})
}

// ScrapeGauge is a gauge read from a function when scraped, for a value
// that lives elsewhere (a map with lazy expiry), so it is never stale. It
// reads 0 until Set is called; the last Set wins.
type ScrapeGauge struct {
	desc *prometheus.Desc
	mu   sync.Mutex
	fn   func() float64
}

var _ prometheus.Collector = (*ScrapeGauge)(nil)

// NewScrapeGauge returns a ScrapeGauge described by opts (no labels).
func NewScrapeGauge(opts prometheus.GaugeOpts) *ScrapeGauge {
	return &ScrapeGauge{desc: prometheus.NewDesc(prometheus.BuildFQName(opts.Namespace, opts.Subsystem, opts.Name), opts.Help, nil, opts.ConstLabels)}
}

// Set makes fn the source of the gauge's value.
func (g *ScrapeGauge) Set(fn func() float64) {
	g.mu.Lock()
	g.fn = fn
	g.mu.Unlock()
}

// Describe implements prometheus.Collector.
func (g *ScrapeGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *ScrapeGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	fn := g.fn
	g.mu.Unlock()
	var v float64
	if fn != nil {
		v = fn()
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
}
