// Package metrics defines sluice's Prometheus metrics (prefix sluice_) in
// one place, so names match DESIGN.md and every component shares them.
package metrics

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the node's collectors. Build one per node with New.
type Metrics struct {
	MirrorRequests      *prometheus.CounterVec   // registry, kind, source, result
	ResolveDuration     prometheus.Histogram     // time to find providers
	BytesServed         *prometheus.CounterVec   // to=local|peer
	BytesFetched        *prometheus.CounterVec   // from=peer
	PeerVerifyFailures  prometheus.Counter       // peer bytes that failed their digest
	LocalVerifyFailures prometheus.Counter       // local content that failed its digest before serving
	RequestDuration     *prometheus.HistogramVec // kind, source
	PeerFetchesInFlight prometheus.Gauge
	HedgedFetches       prometheus.Counter
	ResumedFetches      prometheus.Counter
	PeerFetchRejected   prometheus.Counter // blob fetches refused because every fetch slot was busy
	VerifyRejected      prometheus.Counter // peer requests refused because every background hash slot was busy

	// Serving peers (core/registry, registry.go).
	PeerRefused *prometheus.CounterVec // reason=busy

	// Rollouts (core/coalesce): the node responsible for a key fetching
	// from the upstream on behalf of peers.
	CoalesceFetches       *prometheus.CounterVec // kind=blob|manifest, result=ok|failed|denied|spool_full
	CoalesceUpstreamBytes prometheus.Counter     // bytes read from the upstream for peers
	CoalesceSpoolBytes    prometheus.Gauge       // bytes booked in the spool (blobs and manifests kept for peers)
	CoalesceWaiters       prometheus.Gauge       // peer requests waiting for or streaming a coalesced fetch

	// Peer transfers (core/mirror): how blobs came from providers, one or
	// several at a time, and what happened to the providers.
	PeerTransfers        *prometheus.CounterVec // mode=single|multi
	PeerRangeRequests    prometheus.Counter     // Range requests sent to providers (multi-peer chunks, resumes)
	PeerProviderEvents   *prometheus.CounterVec // reason (PeerProviderReasons)
	MultiPeerMemoryFalls prometheus.Counter     // multi-peer transfers run single-peer: node-wide chunk memory exhausted
	UnhealthyProviders   *ScrapeGauge           // providers remembered unhealthy now (read at scrape)
	QuarantinedPeers     *ScrapeGauge           // peers quarantined now (read at scrape)
}

// PeerProviderReasons are the values of the reason label of
// sluice_mirror_peer_provider_events_total.
var PeerProviderReasons = []string{"too_slow", "size_disagrees", "failed", "quarantined", "unhealthy"}

// New creates the collectors and registers them with reg (nil: a private
// registry, for tests).
func New(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := &Metrics{
		MirrorRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_mirror_requests_total", Help: "Distribution API requests by registry, kind, where the content came from (local, peer, none) and result.",
		}, []string{"registry", "kind", "source", "result"}),
		ResolveDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "sluice_resolve_duration_seconds", Help: "Time to find the first provider of a key.",
			Buckets: []float64{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.5},
		}),
		BytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_bytes_served_total", Help: "Bytes served, to the local containerd or to peers.",
		}, []string{"to"}),
		BytesFetched: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_bytes_fetched_total", Help: "Bytes fetched from peers.",
		}, []string{"from"}),
		PeerVerifyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_peer_verification_failures_total", Help: "Content from a peer that did not match its digest.",
		}),
		LocalVerifyFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_local_verification_failures_total", Help: "Local content that did not match its digest and was not served.",
		}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_request_duration_seconds", Help: "Distribution API request duration.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"kind", "source"}),
		PeerFetchesInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_peer_fetches_in_flight", Help: "Fetches from peers in progress.",
		}),
		HedgedFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_hedged_fetches_total", Help: "Fetches that started a second peer because the first was slow.",
		}),
		ResumedFetches: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_resumed_fetches_total", Help: "Blob fetches resumed on another peer with Range after a failure.",
		}),
		PeerFetchRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_peer_fetch_rejected_total", Help: "Blob fetches from peers refused with 404 because every fetch slot was busy.",
		}),
		VerifyRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_verify_rejected_total", Help: "Peer requests for a blob not yet verified, refused with 404 because every background hash slot was busy.",
		}),
		CoalesceFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_coalesce_fetches_total", Help: "Upstream fetches on behalf of peers (coalesced first pulls) by kind and result (ok, failed, denied by the fetch policy, spool_full).",
		}, []string{"kind", "result"}),
		CoalesceUpstreamBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_coalesce_upstream_bytes_total", Help: "Bytes read from the upstream on behalf of peers (coalesced first pulls).",
		}),
		CoalesceSpoolBytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_coalesce_spool_bytes", Help: "Bytes of blobs and manifests kept for peers (bounded by --coalesce-spool-size).",
		}),
		CoalesceWaiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "sluice_coalesce_waiters", Help: "Peer requests waiting for or streaming a coalesced upstream fetch.",
		}),
	}
	m.newPeerTransferMetrics()
	reg.MustRegister(m.PeerTransfers, m.PeerRangeRequests, m.PeerProviderEvents, m.MultiPeerMemoryFalls,
		m.UnhealthyProviders, m.QuarantinedPeers)
	m.newRegistryMetrics(reg)
	reg.MustRegister(m.CoalesceFetches, m.CoalesceUpstreamBytes, m.CoalesceSpoolBytes, m.CoalesceWaiters)
	reg.MustRegister(m.MirrorRequests, m.ResolveDuration, m.BytesServed, m.BytesFetched,
		m.PeerVerifyFailures, m.LocalVerifyFailures, m.RequestDuration, m.PeerFetchesInFlight,
		m.HedgedFetches, m.ResumedFetches, m.PeerFetchRejected, m.VerifyRejected)
	return m
}
