// Package coalesce is the node responsible for a key during a rollout
// (issue 11): when peers that found no provider ask it for content (a peer
// request with oci.CoalesceHeader), it fetches the content from the
// upstream once, whoever asks and however many at once, and streams it to
// every requester while it arrives.
//
// A manifest named by tag is resolved upstream fresh and kept only for the
// tag TTL (default 30 s), long enough to coalesce the burst of a rollout;
// a manifest by digest and a blob are kept for the TTL after they complete.
// Blobs go to a spool file under the data directory, bounded in total size,
// that readers follow as it grows; the digest is advertised when the fetch
// starts (so later requesters find this node through the normal peer path)
// and withdrawn when the entry expires. The spool directory is emptied at
// start and on Close: nothing survives that the operator did not ask for.
//
// Every fetch is asked of the `fetch` policy first; a deny, a full spool,
// an upstream error or a slow upstream all answer store.ErrNotFound, so the
// requester answers 404 and its containerd goes upstream itself.
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/singleflight"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/policy"
)

// Upstream is what the coalescer needs of the upstream client
// (*upstream.Client).
type Upstream interface {
	Upstream(registry string) (upstream.Upstream, error)
	FetchManifest(ctx context.Context, ref oci.Reference) ([]byte, ocispec.Descriptor, error)
	Blob(ctx context.Context, ref oci.Reference, dgst digest.Digest, size int64) (*upstream.Blob, error)
}

// Announcer announces and withdraws keys (a routing.Router).
type Announcer interface {
	Advertise(ctx context.Context, keys []string) error
	Withdraw(ctx context.Context, keys []string) error
}

// Config bounds what the coalescer keeps.
type Config struct {
	// Dir is the spool directory (emptied at start and on Close).
	Dir string
	// MaxBytes caps the spool: a blob that does not fit (after expired
	// entries are dropped) is not coalesced.
	MaxBytes int64
	// TTL is how long a completed blob or manifest is kept.
	TTL time.Duration
	// TagTTL is how long a tag's resolution is reused (default 30 s).
	TagTTL time.Duration
	// FirstByte bounds how long a requester waits for the upstream to
	// answer before it gets a 404 (default 4 s).
	FirstByte time.Duration
	// Wildcard lets the node fetch for peers from registries that
	// registries.yaml does not list by name under `mirrors` (matched by
	// "*", or no registries.yaml). Off by default: the registry is named
	// by the requester, and the node would send requests to any host a
	// peer names. The upstream client refuses loopback and link-local
	// hosts not named in registries.yaml either way.
	Wildcard bool
	// Backoff is how long a registry whose upstream failed (429, 5xx,
	// refused, unauthorized: anything but "not found") is not asked again
	// for peers (default 10 s). Requesters get a 404 at once meanwhile and
	// go upstream themselves, so a rate-limited upstream sees one burst of
	// the responsible node's retries per Backoff, not one per requester.
	Backoff time.Duration
}

// Coalescer implements registry.Coalescer.
type Coalescer struct {
	up     atomic.Pointer[upstreamRef] // swapped by SetUpstream on a registries.yaml reload
	policy policy.Engine
	ann    Announcer
	cfg    Config
	log    *slog.Logger
	m      *metrics.Metrics

	ctx    context.Context // fetches live until Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu        sync.Mutex
	blobs     map[digest.Digest]*blob
	manifests map[digest.Digest]*manifest
	tags      map[string]tagEntry
	used      int64
	closed    bool
	flights   singleflight.Group   // manifest fetches, by tag key or digest
	resting   map[string]time.Time // registry → until when it is not asked (Config.Backoff)
}

var _ registry.Coalescer = (*Coalescer)(nil)

// Option configures a Coalescer.
type Option func(*Coalescer)

// WithPolicy sets the engine asked at the fetch point; without one every
// fetch is allowed.
func WithPolicy(e policy.Engine) Option { return func(c *Coalescer) { c.policy = e } }

// WithAnnouncer sets the router the digests being fetched are announced on.
func WithAnnouncer(a Announcer) Option { return func(c *Coalescer) { c.ann = a } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option { return func(c *Coalescer) { c.log = l } }

// WithMetrics sets the node's metrics (sluice_coalesce_*).
func WithMetrics(m *metrics.Metrics) Option { return func(c *Coalescer) { c.m = m } }

// New empties cfg.Dir and returns a coalescer fetching through up.
func New(up Upstream, cfg Config, opts ...Option) (*Coalescer, error) {
	if cfg.Dir == "" || cfg.MaxBytes <= 0 || cfg.TTL <= 0 {
		return nil, fmt.Errorf("coalesce: need a spool dir, a size cap and a TTL (got %q, %d, %v)", cfg.Dir, cfg.MaxBytes, cfg.TTL)
	}
	if cfg.TagTTL <= 0 {
		cfg.TagTTL = 30 * time.Second
	}
	if cfg.FirstByte <= 0 {
		cfg.FirstByte = 4 * time.Second
	}
	if cfg.Backoff <= 0 {
		cfg.Backoff = 10 * time.Second
	}
	if err := os.RemoveAll(cfg.Dir); err != nil {
		return nil, fmt.Errorf("coalesce: empty spool: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("coalesce: spool: %w", err)
	}
	c := &Coalescer{cfg: cfg, blobs: map[digest.Digest]*blob{},
		manifests: map[digest.Digest]*manifest{}, tags: map[string]tagEntry{}, resting: map[string]time.Time{}}
	c.up.Store(&upstreamRef{up})
	for _, o := range opts {
		o(c)
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.m == nil {
		c.m = metrics.New(nil)
	}
	c.m.CoalesceSpoolBytes.Set(0)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Go(c.janitor)
	return c, nil
}

// upstreamRef holds the current upstream client (atomic.Pointer needs a
// concrete type).
type upstreamRef struct{ Upstream }

// SetUpstream makes fetches that start from now on use up (a client over a
// reloaded registries.yaml: new endpoints, TLS or credentials). Fetches in
// flight finish with the client their fetch decision was made with, so a
// decision on "credentials: false" never runs with credentials.
func (c *Coalescer) SetUpstream(up Upstream) { c.up.Store(&upstreamRef{up}) }

// Close stops every fetch, withdraws what was announced and empties the
// spool.
func (c *Coalescer) Close() error {
	c.mu.Lock()
	c.closed = true // no fetch starts after this (c.wg.Go before c.wg.Wait)
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	c.mu.Lock()
	var keys []string
	for d := range c.blobs {
		keys = append(keys, d.String())
	}
	for d := range c.manifests {
		keys = append(keys, d.String())
	}
	c.blobs, c.manifests, c.tags = map[digest.Digest]*blob{}, map[digest.Digest]*manifest{}, map[string]tagEntry{}
	c.addUsedLocked(-c.used)
	c.mu.Unlock()
	c.withdraw(keys)
	return os.RemoveAll(c.cfg.Dir)
}

// ServePeer implements registry.Coalescer: it answers a peer from what is
// being or was fetched, and, for a coalesce request the fetch policy
// allows, starts the fetch. store.ErrNotFound means nothing was written.
func (c *Coalescer) ServePeer(ctx context.Context, w http.ResponseWriter, r *http.Request, req oci.Request, peer *policy.Peer) error {
	fetch := r.Header.Get(oci.CoalesceHeader) != ""
	switch {
	case req.Kind == oci.KindManifest && req.Ref.Digest == "":
		if !fetch {
			return store.ErrNotFound // tags are never answered from what was kept for others
		}
		return c.serveTag(ctx, w, r, req.Ref, peer)
	case req.Kind == oci.KindManifest:
		return c.serveManifest(ctx, w, r, req.Ref, peer, fetch)
	case req.Kind == oci.KindBlob:
		return c.serveBlob(ctx, w, r, req.Ref, peer, fetch)
	}
	return store.ErrNotFound
}

// allowed asks the fetch policy whether ref may be fetched for peer, and
// returns the upstream client the decision was made on (the fetch must use
// that one, whatever a reload swapped in since) and what the decision saw
// of the upstream (kept with the entry: later readers are decided on it).
func (c *Coalescer) allowed(ctx context.Context, ref oci.Reference, kind string, peer *policy.Peer) (Upstream, upstream.Upstream, bool) {
	client := c.up.Load().Upstream
	if c.isResting(ref.Registry, time.Now()) {
		c.log.Debug("coalesce: upstream failed recently; not asked for peers", "registry", ref.Registry)
		c.m.CoalesceFetches.WithLabelValues(kind, "backoff").Inc()
		return nil, upstream.Upstream{}, false
	}
	up, err := client.Upstream(ref.Registry)
	if err != nil {
		c.log.Debug("coalesce: no upstream", "registry", ref.Registry, "err", err)
		c.m.CoalesceFetches.WithLabelValues(kind, "failed").Inc()
		return nil, up, false
	}
	if !up.Explicit && !c.cfg.Wildcard {
		c.log.Debug("coalesce: registry not listed by name in registries.yaml mirrors; not fetched for peers", "registry", ref.Registry)
		c.m.CoalesceFetches.WithLabelValues(kind, "denied").Inc()
		return nil, up, false
	}
	return client, up, c.decide(ctx, ref, kind, peer, up)
}

// decide asks the fetch policy whether ref, fetched from up, may be
// fetched for peer. Content fetched for one peer is asked again for every
// other peer it is served to, on the reference it was fetched under: what
// a peer names in its request is a claim.
func (c *Coalescer) decide(ctx context.Context, ref oci.Reference, kind string, peer *policy.Peer, up upstream.Upstream) bool {
	if c.policy == nil {
		return true
	}
	in := policy.Input{
		Action:    policy.ActionFetch,
		Reference: &policy.Reference{Registry: ref.Registry, Repository: ref.Repository, Tag: ref.Tag, Digest: ref.Digest.String(), Kind: kind},
		Peer:      peer,
		Upstream:  &policy.Upstream{Endpoint: up.Endpoint, Credentials: up.Credentials},
	}
	d, err := c.policy.Decide(ctx, policy.ActionFetch, in)
	if err != nil {
		c.log.Warn("coalesce: policy error", "ref", ref.String(), "err", err)
		c.m.CoalesceFetches.WithLabelValues(kind, "denied").Inc()
		return false
	}
	if !d.Allow {
		c.log.Debug("coalesce: fetch denied", "ref", ref.String(), "reasons", d.Reasons)
		c.m.CoalesceFetches.WithLabelValues(kind, "denied").Inc()
		return false
	}
	return true
}

func (c *Coalescer) advertise(d digest.Digest) {
	if c.ann == nil || c.ctx.Err() != nil {
		return
	}
	// Not in c.wg: a manifest flight (outside c.wg) may announce while
	// Close waits; the announcement ends with c.ctx.
	go func() {
		ctx, cancel := context.WithTimeout(c.ctx, 10*time.Second)
		defer cancel()
		if err := c.ann.Advertise(ctx, []string{d.String()}); err != nil && !errors.Is(err, context.Canceled) {
			c.log.Debug("coalesce: advertise", "digest", d, "err", err)
		}
	}()
}

func (c *Coalescer) withdraw(keys []string) {
	if c.ann == nil || len(keys) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.ann.Withdraw(ctx, keys); err != nil {
		c.log.Debug("coalesce: withdraw", "keys", len(keys), "err", err)
	}
}

// janitor drops expired entries: completed blobs no one reads, manifests
// and tags past their TTL.
func (c *Coalescer) janitor() {
	tick := time.NewTicker(max(min(c.cfg.TTL, c.cfg.TagTTL)/4, 50*time.Millisecond))
	defer tick.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case now := <-tick.C:
			c.withdraw(c.expire(now))
		}
	}
}

// expire removes what expired by now and returns the keys to withdraw.
func (c *Coalescer) expire(now time.Time) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var keys []string
	for d, b := range c.blobs {
		if b.expired(now) {
			c.dropLocked(b)
			keys = append(keys, d.String())
		}
	}
	for d, m := range c.manifests {
		if now.After(m.expires) {
			delete(c.manifests, d)
			c.addUsedLocked(-int64(len(m.bytes)))
			keys = append(keys, d.String())
		}
	}
	for k, t := range c.tags {
		if now.After(t.at.Add(c.cfg.TagTTL)) {
			delete(c.tags, k)
		}
	}
	return keys
}

// addUsedLocked books delta bytes of the spool (c.mu held) and reports the
// total.
func (c *Coalescer) addUsedLocked(delta int64) {
	c.used += delta
	c.m.CoalesceSpoolBytes.Set(float64(c.used))
}

// rest records that registry's upstream failed with err: unless the
// content is simply missing (or the spool is full, or the node closes),
// the registry is not asked for peers for Config.Backoff.
func (c *Coalescer) rest(registry string, err error) {
	if err == nil || errors.Is(err, store.ErrNotFound) || errors.Is(err, errSpoolFull) || c.ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.resting) >= maxResting {
		now := time.Now()
		for r, until := range c.resting {
			if !now.Before(until) {
				delete(c.resting, r)
			}
		}
		if len(c.resting) >= maxResting {
			return // bounded: a flood of failing names does not grow it
		}
	}
	c.resting[registry] = time.Now().Add(c.cfg.Backoff)
}

// maxResting bounds the registries remembered as failing.
const maxResting = 1024

func (c *Coalescer) isResting(registry string, now time.Time) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	until, ok := c.resting[registry]
	if ok && !now.Before(until) {
		delete(c.resting, registry)
		return false
	}
	return ok
}
