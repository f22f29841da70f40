// Package registry is sluice's HTTP server: the read-only OCI distribution
// API over the node's store, the mirror path that fetches from peers what
// the store lacks, policy checks at the serve and resolve decision points,
// Range, HEAD and metrics.
package registry

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"golang.org/x/time/rate"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// PeerHeader marks a request from another sluice node: it carries the
// requesting node's peer ID, and such a request is served from local
// content only (no mirroring, so no loops).
const PeerHeader = "Sluice-Peer"

// Manifest is a manifest fetched from a peer and verified.
type Manifest struct {
	Bytes     []byte
	MediaType string
	Peer      string
}

// ErrAborted is returned by a Mirror that had already started the response
// body when it failed: the server must abort the connection so the client
// never takes a short or wrong body for a success.
var ErrAborted = errors.New("response aborted")

// Mirror fetches from peers what the local store does not hold.
type Mirror interface {
	// Manifest resolves a tag or digest through peers; store.ErrNotFound
	// when no peer has it within the resolve timeout.
	Manifest(ctx context.Context, ref oci.Reference) (Manifest, error)
	// ServeBlob writes the blob (honouring Range and HEAD) from peers,
	// verifying it against its digest. store.ErrNotFound before anything
	// was written means no peer has it; ErrAborted means the body started
	// and could not be completed.
	ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, ref oci.Reference) error
}

// Server serves the distribution API. Build with New.
type Server struct {
	store           store.Store
	defaultRegistry string
	mirror          Mirror
	policy          policy.Engine
	metrics         *metrics.Metrics
	log             *slog.Logger
	verified        *verifyCache
	peerLimit       *rate.Limiter
	peerServes      chan struct{} // slots of peer blob GETs from the store (peerserves.go); nil: no cap
	// clientStore: the store is the local client's own content store, so
	// the local client is never answered from it.
	clientStore bool
	observer    Observer
	labels      registryLabels // bounded registry label of the request metrics
	coalescer   Coalescer      // rollouts: peers answered from upstream fetches (coalesce.go)
}

// Option configures a Server.
type Option func(*Server)

// WithMirror enables fetching from peers for local clients.
func WithMirror(m Mirror) Option { return func(s *Server) { s.mirror = m } }

// WithPolicy sets the engine asked at the serve and resolve points.
func WithPolicy(e policy.Engine) Option { return func(s *Server) { s.policy = e } }

// WithMetrics sets the node's metrics.
func WithMetrics(m *metrics.Metrics) Option { return func(s *Server) { s.metrics = m } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithClientStore says the store is the local client's own content store
// (the node's containerd): its requests are then answered only through
// peers, after the resolve policy, and otherwise with a 404 at once. The
// client already holds everything in that store and asks sluice only for
// what it lacks or must re-check (a moved tag, imagePullPolicy: Always),
// which only peers or the upstream can answer. Peers are still served
// from the store. The embedded oci-layout store belongs to no client and
// keeps serving local requests (the default).
func WithClientStore(own bool) Option { return func(s *Server) { s.clientStore = own } }

// WithVerifyConcurrency bounds how many unverified blob files are hashed
// at once in the background (default 4); a peer asking for another one
// while every slot is busy waits in line within the verification grace
// (100 ms), then is answered 404; a HEAD does not wait. n < 1 keeps the
// default.
func WithVerifyConcurrency(n int) Option {
	return func(s *Server) {
		if n >= 1 {
			s.verified.slots = n
		}
	}
}

// WithDefaultRegistry sets the registry of requests without ?ns=.
func WithDefaultRegistry(r string) Option { return func(s *Server) { s.defaultRegistry = r } }

// New returns a server over st.
func New(st store.Store, opts ...Option) *Server {
	s := &Server{store: st, defaultRegistry: "docker.io", verified: newVerifyCache(verdictCacheSize),
		peerServes: make(chan struct{}, DefaultMaxPeerServes)}
	for _, o := range opts {
		o(s)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = metrics.New(nil)
	}
	return s
}

// ServeHTTP implements http.Handler.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	req, err := oci.ParseRequest(r.Method, r.URL, s.defaultRegistry)
	if err != nil {
		oci.WriteError(w, r, err)
		return
	}
	if req.Kind == oci.KindBase {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", "2")
		if r.Method != http.MethodHead {
			_, _ = w.Write([]byte("{}"))
		}
		return
	}
	c := &call{Server: s, w: w, r: r, req: req, peer: peerOf(r)}
	defer c.observe(start)()
	c.serve()
	source := c.source
	if source == "" {
		source = "none"
	}
	result := "ok"
	if c.status >= 400 {
		result = strconv.Itoa(c.status)
	}
	s.metrics.MirrorRequests.WithLabelValues(s.labels.label(req.Ref.Registry, c.status < 400), req.Kind.String(), source, result).Inc()
	s.metrics.RequestDuration.WithLabelValues(req.Kind.String(), source).Observe(time.Since(start).Seconds())
}

// peerOf returns the requesting peer, nil for the local containerd.
func peerOf(r *http.Request) *policy.Peer {
	id := r.Header.Get(PeerHeader)
	var subject string
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		subject = r.TLS.PeerCertificates[0].Subject.String()
	}
	if id == "" && subject == "" {
		// Only a loopback client is the local containerd. Anyone else
		// without the header is treated as a peer: served local content
		// only (never proxied to other peers), under the peer's policy.
		if isLoopback(r.RemoteAddr) {
			return nil
		}
		return &policy.Peer{Address: r.RemoteAddr}
	}
	if len(id) > 128 {
		id = id[:128]
	}
	return &policy.Peer{ID: id, Address: r.RemoteAddr, TLSSubject: subject}
}

func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
