package routing

import (
	"context"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/policy"
)

// eventStore is a memory store whose events the test sends by hand and
// whose Images and Stat calls are counted.
type eventStore struct {
	*memory.Store
	events chan store.Event
	lists  atomic.Int64
	stats  atomic.Int64
}

func newEventStore() *eventStore {
	return &eventStore{Store: memory.New(), events: make(chan store.Event)}
}

func (s *eventStore) Subscribe(context.Context) (<-chan store.Event, error) { return s.events, nil }

func (s *eventStore) Images(ctx context.Context) ([]store.Image, error) {
	s.lists.Add(1)
	return s.Store.Images(ctx)
}

func (s *eventStore) Stat(ctx context.Context, d digest.Digest) (store.Info, error) {
	s.stats.Add(1)
	return s.Store.Stat(ctx, d)
}

// countingPolicy allows everything and counts decisions.
type countingPolicy struct{ n atomic.Int64 }

func (p *countingPolicy) Decide(context.Context, policy.Action, policy.Input) (policy.Decision, error) {
	p.n.Add(1)
	return policy.Decision{Allow: true}, nil
}

// TestAdvertiser_RunDebouncesEventBursts: a pull emits a content event
// every few milliseconds. The store is scanned once the burst is quiet, or
// once per ten debounce delays while it lasts, not once per delay.
func TestAdvertiser_RunDebouncesEventBursts(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	self := net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000"))
	s := newEventStore()
	img := addImage(t, s.Store, "docker.io/library/app:1", `{"c":9}`, "burst-layer", true)
	pol := &countingPolicy{}
	const debounce = 40 * time.Millisecond
	a := NewAdvertiser(self, s, WithPolicy(pol), WithDebounce(debounce))
	startAdvertiser(t, a)
	eventually(t, "initial scan", func() bool { return slices.Contains(a.Advertised(), img.layer.Digest.String()) })
	lists0, stats0, decisions0 := s.lists.Load(), s.stats.Load(), pol.n.Load()
	perScanStats, perScanDecisions := stats0, decisions0

	start := time.Now()
	for i := range 60 {
		s.events <- store.Event{Type: store.EventContentCreate, Digest: digest.FromString(string(rune(i)))}
		time.Sleep(debounce / 4)
	}
	burst := time.Since(start)
	time.Sleep(3 * debounce)
	eventually(t, "scan after the burst", func() bool { return s.lists.Load() > lists0 })

	scans := s.lists.Load() - lists0
	maxScans := 1 + int64(burst/(debounceMaxFactor*debounce))
	t.Logf("burst of 60 events over %s: %d scans, %d Stat calls, %d policy decisions",
		burst, scans, s.stats.Load()-stats0, pol.n.Load()-decisions0)
	if scans > maxScans {
		t.Errorf("%d scans during a %s burst, want at most %d", scans, burst, maxScans)
	}
	if got := s.stats.Load() - stats0; got > maxScans*perScanStats {
		t.Errorf("%d Stat calls, want at most %d", got, maxScans*perScanStats)
	}
	if got := pol.n.Load() - decisions0; got > maxScans*perScanDecisions {
		t.Errorf("%d policy decisions, want at most %d", got, maxScans*perScanDecisions)
	}
}

// TestAdvertiser_RunDebounceHasMaxWait: events that never stop still get
// acted upon within ten debounce delays.
func TestAdvertiser_RunDebounceHasMaxWait(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	self := net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000"))
	s := newEventStore()
	const debounce = 20 * time.Millisecond
	a := NewAdvertiser(self, s, WithDebounce(debounce))
	startAdvertiser(t, a)
	eventually(t, "initial scan", func() bool { return s.lists.Load() > 0 })
	lists0 := s.lists.Load()
	img := addImage(t, s.Store, "docker.io/library/late:1", `{"c":10}`, "late", true)
	stop := time.Now().Add(2 * debounceMaxFactor * debounce * 3)
	for time.Now().Before(stop) && !slices.Contains(a.Advertised(), img.layer.Digest.String()) {
		s.events <- store.Event{Type: store.EventContentCreate, Digest: img.layer.Digest}
		time.Sleep(debounce / 4)
	}
	if !slices.Contains(a.Advertised(), img.layer.Digest.String()) {
		t.Fatalf("nothing advertised while events kept coming (%d scans)", s.lists.Load()-lists0)
	}
}

// TestAdvertiser_RunRescansOnResync: a resync event (the store's event
// stream was re-established) makes the advertiser find what it missed.
func TestAdvertiser_RunRescansOnResync(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	self := net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000"))
	s := newEventStore()
	a := NewAdvertiser(self, s, WithDebounce(10*time.Millisecond))
	startAdvertiser(t, a)
	eventually(t, "initial scan", func() bool { return s.lists.Load() > 0 })
	img := addImage(t, s.Store, "docker.io/library/missed:1", `{"c":11}`, "missed", true) // no event sent
	s.events <- store.Event{Type: store.EventResync}
	eventually(t, "missed image advertised after resync", func() bool {
		return hasAll(a.Advertised(), append(img.digestKeys(), TagKey("docker.io", "library/missed", "1"))...)
	})
}
