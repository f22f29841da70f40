// Package mirror fetches from peers what the local store lacks: it looks
// providers up on the router within the resolve timeout, asks them with
// hedging (one more peer each time the hedge delay passes without an
// answer), streams to the client while hashing, never lets a digest
// mismatch complete as success (the peer proven to have sent the wrong
// bytes is quarantined and the next one tried), and resumes a blob with
// Range on another peer when one dies mid-transfer.
package mirror

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
)

// Mirror implements registry.Mirror over a routing.Router.
type Mirror struct {
	router         routing.Router
	client         *http.Client
	self           string
	resolveTimeout time.Duration
	hedgeDelay     time.Duration
	idleTimeout    time.Duration
	maxPeers       int
	quarantine     *quarantine
	health         *health      // providers that failed recently, tried last (health.go)
	parallel       int          // providers a large blob is fetched from at once (multipeer.go)
	ranges         *rangeMemory // chunk buffers of multi-peer transfers, node-wide (multipeer.go)
	metrics        *metrics.Metrics
	log            *slog.Logger
	sem            chan struct{}
	tlsOnly        bool          // set by WithTLS: peers announcing plain http are not fetched from
	coalesceSelf   *routing.Peer // set by WithCoalesce: this node's registry, as peers reach it
	verifyOff      bool          // benchmark A/B only, set through export_test.go; no option sets it
}

var _ registry.Mirror = (*Mirror)(nil)

// Option configures a Mirror.
type Option func(*Mirror)

// WithResolveTimeout bounds the provider lookup (default 50 ms, chosen
// from the DHT simulation: RATIONALE.md "Why is the resolve budget
// 50 ms?"): nothing found by then means 404, so containerd moves on to the
// next host. A lookup that ends sooner without a provider answers sooner.
func WithResolveTimeout(d time.Duration) Option { return func(m *Mirror) { m.resolveTimeout = d } }

// WithHedgeDelay sets how long the first peer may take to answer before a
// second is asked too (default 30 ms).
func WithHedgeDelay(d time.Duration) Option { return func(m *Mirror) { m.hedgeDelay = d } }

// WithIdleTimeout sets how long a peer's response may stall before the
// fetch moves to another peer (default 5 s).
func WithIdleTimeout(d time.Duration) Option { return func(m *Mirror) { m.idleTimeout = d } }

// WithSelf sets the value of the peer header this node sends (its ID).
func WithSelf(id string) Option { return func(m *Mirror) { m.self = id } }

// WithTLS sets the client TLS config used for https peers (mTLS). A node
// that has one fetches only over https: the scheme is what a peer claims
// about itself, and a claim of "http" must not downgrade the transfer.
func WithTLS(c *tls.Config) Option {
	return func(m *Mirror) {
		m.client.Transport.(*http.Transport).TLSClientConfig = c
		m.tlsOnly = c != nil
	}
}

// WithMetrics sets the node's metrics.
func WithMetrics(mt *metrics.Metrics) Option { return func(m *Mirror) { m.metrics = mt } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(m *Mirror) { m.log = l } }

// WithQuarantine sets how long a peer that served bad bytes is avoided
// (default 2 minutes).
func WithQuarantine(d time.Duration) Option { return func(m *Mirror) { m.quarantine.ttl = d } }

// WithPeerHealth sets how long a provider that failed (connection error,
// 5xx, slow answer, broken transfer) is tried after the others (default 1
// minute; 0 turns the memory off).
func WithPeerHealth(ttl time.Duration) Option { return func(m *Mirror) { m.health.ttl = ttl } }

// WithSlowPeer sets how long a peer may take to answer before it counts as
// unhealthy (default 1 s); its answer is still used.
func WithSlowPeer(d time.Duration) Option { return func(m *Mirror) { m.health.slowAfter = d } }

// WithPeerFetchParallel sets from how many providers at most one large blob
// is fetched at once, in ranges (default 3; 1 fetches from one provider at
// a time, resuming on another when it fails).
func WithPeerFetchParallel(k int) Option { return func(m *Mirror) { m.parallel = max(k, 1) } }

// WithMultiPeerMemory bounds the chunk buffers of every multi-peer
// transfer together (default 128 MiB). A transfer takes what is left of
// it, up to its window (--peer-fetch-parallel + 2 chunks of 4 MiB); one
// that finds less than two chunks fetches from one provider at a time.
func WithMultiPeerMemory(bytes int64) Option {
	return func(m *Mirror) { m.ranges = newRangeMemory(int(bytes / rangeChunk)) }
}

// WithMaxConcurrent bounds concurrent blob fetches from peers (default 64);
// a blob asked for while every slot is busy gets 404 at once.
func WithMaxConcurrent(n int) Option { return func(m *Mirror) { m.sem = make(chan struct{}, n) } }

// New returns a Mirror that finds peers through r.
func New(r routing.Router, opts ...Option) *Mirror {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          256,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 5 * time.Second,
		DisableCompression:    true,
		ReadBufferSize:        4 << 10, // small: body reads into our larger buffers bypass bufio (no second copy)
		WriteBufferSize:       16 << 10,
	}
	m := &Mirror{
		router: r, client: &http.Client{Transport: tr, CheckRedirect: noRedirects},
		resolveTimeout: defaultResolveTimeout, hedgeDelay: 30 * time.Millisecond, idleTimeout: 5 * time.Second, maxPeers: 8,
		quarantine: newQuarantine(2 * time.Minute), sem: make(chan struct{}, 64),
		health: newHealth(defaultHealthTTL, defaultHealthMax), parallel: defaultParallel,
		ranges: newRangeMemory(defaultRangeMemory / rangeChunk),
	}
	for _, o := range opts {
		o(m)
	}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.metrics == nil {
		m.metrics = metrics.New(nil)
	}
	m.wireMetrics()
	return m
}

func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// defaultResolveTimeout is the lookup budget unless WithResolveTimeout
// sets another (--resolve-timeout has the same default).
const defaultResolveTimeout = 50 * time.Millisecond

// errBadPeer marks a peer answer that cannot be used (wrong status, wrong
// length, wrong digest); the next peer is tried.
var errBadPeer = errors.New("unusable answer from peer")

// Manifest implements registry.Mirror.
func (m *Mirror) Manifest(ctx context.Context, ref oci.Reference) (registry.Manifest, error) {
	key := ref.Digest.String()
	if ref.Digest == "" {
		key = ref.TagKey()
	}
	peers, err := m.find(ctx, key)
	if err != nil {
		return registry.Manifest{}, err
	}
	path := fmt.Sprintf("/v2/%s/manifests/%s?ns=%s", ref.Repository, manifestRef(ref), ref.Registry)
	var lastErr error
	for {
		resp, p, err := m.first(ctx, peers, http.MethodGet, path, 0, false)
		if err != nil {
			if lastErr != nil && errors.Is(err, store.ErrNotFound) {
				return registry.Manifest{}, fmt.Errorf("%w (last peer error: %v)", store.ErrNotFound, lastErr)
			}
			return registry.Manifest{}, err
		}
		b, err := readManifest(resp, ref.Digest)
		if err == nil {
			m.metrics.BytesFetched.WithLabelValues("peer").Add(float64(len(b)))
			mt := resp.Header.Get("Content-Type")
			if det := oci.DetectManifestMediaType(b); det != "" && !store.IsManifestOrIndex(mt) {
				mt = det
			}
			return registry.Manifest{Bytes: b, MediaType: mt, Peer: p.ID}, nil
		}
		if errors.Is(err, errDigestMismatch) {
			m.badBytes(p, ref.String())
		}
		lastErr = err
		peers.fail(p)
	}
}

func manifestRef(ref oci.Reference) string {
	if ref.Digest != "" {
		return ref.Digest.String()
	}
	return ref.Tag
}

var errDigestMismatch = errors.New("content does not match its digest")

// readManifest reads a bounded manifest body and verifies it: against the
// requested digest, or for a tag against the digest the peer announced.
func readManifest(resp *http.Response, want digest.Digest) ([]byte, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%w: status %d", errBadPeer, resp.StatusCode)
	}
	if resp.ContentLength > store.MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest of %d bytes is over the limit", errBadPeer, resp.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, store.MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadPeer, err)
	}
	if len(b) > store.MaxManifestSize {
		return nil, fmt.Errorf("%w: manifest over the limit", errBadPeer)
	}
	if want == "" {
		if h := resp.Header.Get("Docker-Content-Digest"); h != "" {
			want, _ = digest.Parse(h)
		}
	}
	if want != "" && want.Algorithm().Available() && want.Algorithm().FromBytes(b) != want {
		return nil, errDigestMismatch
	}
	return b, nil
}

func (m *Mirror) badBytes(p routing.Peer, what string) {
	m.metrics.PeerVerifyFailures.Inc()
	m.quarantine.add(p.ID)
	m.providerEvent(reasonQuarantined)
	m.log.Warn("peer sent content that does not match its digest; quarantined", "peer", p.ID, "addr", p.Addr.String(), "ref", what)
}
