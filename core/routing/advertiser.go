package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// Defaults of the Advertiser.
const (
	// DefaultReprovideInterval is a third of DefaultRecordTTL, so a record
	// survives two missed re-provides.
	DefaultReprovideInterval = DefaultRecordTTL / 3
	DefaultDebounce          = 200 * time.Millisecond
	// debounceMaxFactor bounds how far a stream of events can push the
	// debounce back: at most this many debounce delays after the first
	// event of a batch, the batch is acted upon.
	debounceMaxFactor = 10
	maxRetryBackoff   = 10 * time.Second
	routerCallTimeout = time.Minute
)

// Advertiser keeps a router's announcements in step with a store: every
// digest reachable from each image (index, manifests, configs, layers
// present locally) and a registry/repository:tag key per tagged image,
// each only if the policy allows it for at least one image holding it.
type Advertiser struct {
	router    Router
	store     store.Store
	policy    policy.Engine
	log       *slog.Logger
	reg       prometheus.Registerer
	reprovide time.Duration
	debounce  time.Duration

	// Owned by Run's goroutine.
	images  map[string]map[string]bool // image name → key → allowed
	pending map[string]bool            // wanted but not yet announced
	backoff time.Duration

	mu        sync.Mutex
	announced map[string]bool
	shared    []string // images whose tag key the policy lets us advertise
	gauge     prometheus.Gauge
}

// AdvertiserOption configures an Advertiser.
type AdvertiserOption func(*Advertiser)

// WithPolicy asks e (action "advertise") before announcing each key.
func WithPolicy(e policy.Engine) AdvertiserOption { return func(a *Advertiser) { a.policy = e } }

// WithLogger sets the logger; the advertiser is silent without one.
func WithLogger(l *slog.Logger) AdvertiserOption { return func(a *Advertiser) { a.log = l } }

// WithRegisterer registers sluice_advertised_keys and, when the router is
// a PeerCounter, sluice_peers on reg for the duration of Run.
func WithRegisterer(reg prometheus.Registerer) AdvertiserOption {
	return func(a *Advertiser) { a.reg = reg }
}

// WithReprovideInterval sets how often every key is announced again; it
// must be shorter than the routers' record TTL.
func WithReprovideInterval(d time.Duration) AdvertiserOption {
	return func(a *Advertiser) { a.reprovide = d }
}

// WithDebounce sets how long store events are gathered before acting.
func WithDebounce(d time.Duration) AdvertiserOption { return func(a *Advertiser) { a.debounce = d } }

// NewAdvertiser returns an advertiser of s's content on r.
func NewAdvertiser(r Router, s store.Store, opts ...AdvertiserOption) *Advertiser {
	a := &Advertiser{router: r, store: s, reprovide: DefaultReprovideInterval, debounce: DefaultDebounce}
	for _, o := range opts {
		o(a)
	}
	a.log = logger(a.log)
	a.gauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "sluice_advertised_keys", Help: "Keys this node announces on the DHT.",
	})
	return a
}

// SharedImages returns, sorted, the names of the images whose tag key the
// advertise policy allows (announced or still waiting for peers). Status
// pages list these and never an image the policy hides.
func (a *Advertiser) SharedImages() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Clone(a.shared)
}

// Advertised returns the keys currently announced, sorted.
func (a *Advertiser) Advertised() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Sorted(maps.Keys(a.announced))
}

func (a *Advertiser) register() (unregister func(), err error) {
	if a.reg == nil {
		return func() {}, nil
	}
	cs := []prometheus.Collector{a.gauge}
	if pc, ok := a.router.(PeerCounter); ok {
		cs = append(cs, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sluice_peers", Help: "Nodes in the DHT routing table.",
		}, func() float64 { return float64(pc.PeerCount()) }))
	}
	for i, c := range cs {
		if err := a.reg.Register(c); err != nil {
			for _, done := range cs[:i] {
				a.reg.Unregister(done)
			}
			return nil, fmt.Errorf("register advertiser metrics: %w", err)
		}
	}
	return func() {
		for _, c := range cs {
			a.reg.Unregister(c)
		}
	}, nil
}

// Run announces the store's keys, follows store events (when the store is
// a store.Subscriber) and re-provides every interval until ctx is done. It
// returns nil when ctx is done, or an error if it cannot start. Call it
// once at a time.
//
// Image create/update events re-walk that image; image deletes drop it;
// content events (a layer arriving or going) and resync events (the store's
// event stream was re-established, events may be lost) re-walk every image.
// Events are gathered until none came for the debounce delay (a trailing
// debounce), but for no longer than ten delays after the first of a batch:
// during a pull, content events arrive every few milliseconds, and a
// debounce that is never extended re-walked every image every 200 ms. Every reprovide interval all
// images are re-walked (catching missed events and policy reloads: keys now
// denied are withdrawn) and every announced key is announced again. Keys
// whose announcement failed are retried from 1 s, doubling up to 10 s.
func (a *Advertiser) Run(ctx context.Context) error {
	unregister, err := a.register()
	if err != nil {
		return err
	}
	defer unregister()
	a.images = map[string]map[string]bool{}
	a.pending = map[string]bool{}
	a.mu.Lock()
	a.announced = map[string]bool{}
	a.mu.Unlock()

	events, resubscribe := a.subscribe(ctx)
	if err := a.scanAll(ctx); err != nil {
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("list images", "error", err)
	}
	a.reconcile(ctx)

	reprovide := time.NewTicker(a.reprovide)
	defer reprovide.Stop()
	debounce := newStoppedTimer()
	defer debounce.Stop()
	retry := newStoppedTimer()
	defer retry.Stop()
	armed := false
	var batchStart time.Time
	full := false
	dirty := map[string]store.Image{}
	arm := func() {
		now := time.Now()
		if !armed {
			armed = true
			batchStart = now
		}
		wait := min(a.debounce, batchStart.Add(debounceMaxFactor*a.debounce).Sub(now))
		debounce.Reset(max(wait, 0))
	}
	for {
		if len(a.pending) > 0 && a.backoff == 0 {
			a.backoff = time.Second
			retry.Reset(a.backoff)
		}
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-events:
			if !ok {
				events = resubscribe()
				full = true
				arm()
				continue
			}
			a.log.Debug("store event", "type", ev.Type, "image", ev.Image.Name, "digest", ev.Digest)
			switch ev.Type {
			case store.EventImageCreate, store.EventImageUpdate:
				dirty[ev.Image.Name] = ev.Image
			case store.EventImageDelete:
				delete(dirty, ev.Image.Name)
				delete(a.images, ev.Image.Name)
			case store.EventResync:
				a.log.Info("store events may have been missed, rescanning the store")
				full = true
			default: // content created or deleted: images may have gained or lost parts
				full = true
			}
			arm()
		case <-debounce.C:
			armed = false
			if full {
				if err := a.scanAll(ctx); err != nil && ctx.Err() == nil {
					a.log.Warn("list images", "error", err)
				}
			} else {
				for _, img := range dirty {
					a.scanImage(ctx, img)
				}
			}
			full = false
			clear(dirty)
			a.reconcile(ctx)
		case <-reprovide.C:
			if err := a.scanAll(ctx); err != nil && ctx.Err() == nil {
				a.log.Warn("list images", "error", err)
			}
			a.reconcile(ctx)
			a.refresh(ctx)
		case <-retry.C:
			a.advertise(ctx, slices.Collect(maps.Keys(a.pending)))
			if len(a.pending) > 0 {
				a.backoff = min(a.backoff*2, maxRetryBackoff)
				retry.Reset(a.backoff)
			} else {
				a.backoff = 0
			}
		}
	}
}

func newStoppedTimer() *time.Timer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return t
}

// subscribe subscribes to store events. The returned function subscribes
// again after the channel closed, waiting a growing delay; while it cannot,
// the advertiser relies on its periodic rescans (events stays nil).
func (a *Advertiser) subscribe(ctx context.Context) (<-chan store.Event, func() <-chan store.Event) {
	sub, ok := a.store.(store.Subscriber)
	if !ok {
		return nil, func() <-chan store.Event { return nil }
	}
	delay := time.Second
	try := func() <-chan store.Event {
		ch, err := sub.Subscribe(ctx)
		if err != nil {
			if ctx.Err() == nil {
				a.log.Warn("subscribe to store events", "error", err)
			}
			return nil
		}
		return ch
	}
	again := func() <-chan store.Event {
		if ctx.Err() != nil {
			return nil
		}
		a.log.Warn("store event stream closed, subscribing again", "in", delay)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(delay*2, maxRetryBackoff)
		return try()
	}
	return try(), again
}

// reconcile announces the keys now wanted and withdraws those no image
// wants any more.
func (a *Advertiser) reconcile(ctx context.Context) {
	want := desired(a.images)
	var shared []string
	for name, keys := range a.images {
		if keys[name] { // a tagged image's name is its tag key
			shared = append(shared, name)
		}
	}
	slices.Sort(shared)
	a.mu.Lock()
	a.shared = shared
	var add, drop []string
	for k := range want {
		if !a.announced[k] && !a.pending[k] {
			add = append(add, k)
		}
	}
	for k := range a.announced {
		if !want[k] {
			drop = append(drop, k)
		}
	}
	for k := range a.pending {
		if !want[k] {
			delete(a.pending, k)
		}
	}
	a.mu.Unlock()
	if len(drop) > 0 {
		slices.Sort(drop)
		wctx, cancel := context.WithTimeout(ctx, routerCallTimeout)
		err := a.router.Withdraw(wctx, drop)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.log.Warn("withdraw", "keys", len(drop), "error", err)
		}
		a.mu.Lock()
		for _, k := range drop {
			delete(a.announced, k)
		}
		a.gauge.Set(float64(len(a.announced)))
		a.mu.Unlock()
		a.log.Debug("withdrew", "keys", len(drop))
	}
	if len(add) > 0 {
		slices.Sort(add)
		a.advertise(ctx, add)
	}
}

// refresh announces every announced key again, before records expire.
func (a *Advertiser) refresh(ctx context.Context) {
	a.mu.Lock()
	keys := slices.Sorted(maps.Keys(a.announced))
	a.mu.Unlock()
	if len(keys) > 0 {
		a.advertise(ctx, keys)
	}
}

// advertise announces keys; those that fail are kept pending for a retry.
func (a *Advertiser) advertise(ctx context.Context, keys []string) {
	actx, cancel := context.WithTimeout(ctx, routerCallTimeout)
	err := a.router.Advertise(actx, keys)
	cancel()
	failed := map[string]bool{}
	if err != nil {
		var ke *KeysError
		if errors.As(err, &ke) {
			for _, k := range ke.Keys {
				failed[k] = true
			}
		} else {
			for _, k := range keys {
				failed[k] = true
			}
		}
		if ctx.Err() == nil {
			a.log.Debug("advertise", "keys", len(keys), "failed", len(failed), "error", err)
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range keys {
		if failed[k] {
			delete(a.announced, k)
			a.pending[k] = true
		} else {
			a.announced[k] = true
			delete(a.pending, k)
		}
	}
	a.gauge.Set(float64(len(a.announced)))
	if err == nil {
		a.log.Debug("advertised", "keys", len(keys))
	}
}
