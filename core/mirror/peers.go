package mirror

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
)

// peerSet hands out the providers of one key in the order the router found
// them, skipping quarantined peers and peers that failed this request.
// Every lookup's channel is drained in the background into the queue, so
// providers found after the first are kept for hedging and resumes.
// Providers remembered as unhealthy (health.go) wait in later: they are
// handed out only once the queue is empty and every lookup ended, and as
// probes: all of them share one budget (the resolve timeout, from the
// first probe) to answer, so a key whose providers are all dead answers
// 404 within the lookup's budget plus that one.
type peerSet struct {
	mu      sync.Mutex
	key     string
	m       *Mirror
	relooks int
	open    int           // lookups still feeding the queue
	notify  chan struct{} // closed when the queue or open changes
	queue   []routing.Peer
	later   []routing.Peer // unhealthy providers, handed out last
	seen    map[string]bool
	failed  map[string]bool
	q       *quarantine
	// coalesce is the ID of the node responsible for the key when no
	// provider was found (coalesce.go): it is asked with the coalesce
	// header, and only it.
	coalesce string
	// probeEnd is when the unhealthy peers handed out must have answered
	// by (zero until the first is handed out); probes holds their IDs.
	probeEnd time.Time
	probes   map[string]bool
	// healthy is set once a peer not known unhealthy was handed out: a
	// request that only ever probed unhealthy peers does not look up
	// again (the same dead records would come back) but answers 404.
	healthy bool
}

func (m *Mirror) lookup(ctx context.Context, key string) (*peerSet, error) {
	start := time.Now()
	ps := &peerSet{key: key, m: m, seen: map[string]bool{}, failed: map[string]bool{}, q: m.quarantine, notify: make(chan struct{})}
	if err := ps.start(ctx, m.resolveTimeout); err != nil {
		return nil, err
	}
	// The first provider decides whether the key is known at all; later
	// ones keep arriving in the background until the resolve deadline.
	ok := ps.wait(ctx)
	m.metrics.ResolveDuration.Observe(time.Since(start).Seconds())
	if !ok {
		return nil, fmt.Errorf("no peer holds %s: %w", key, store.ErrNotFound)
	}
	return ps, nil
}

// start runs one lookup bounded by timeout and feeds its peers to the queue.
func (ps *peerSet) start(ctx context.Context, timeout time.Duration) error {
	lctx, cancel := context.WithTimeout(ctx, timeout)
	ch, err := ps.m.router.Lookup(lctx, ps.key, ps.m.maxPeers)
	if err != nil {
		cancel()
		return fmt.Errorf("lookup %s: %w", ps.key, err)
	}
	ps.mu.Lock()
	ps.open++
	ps.mu.Unlock()
	go func() {
		defer cancel()
		for p := range ch {
			ps.mu.Lock()
			if !ps.seen[p.ID] && !ps.failed[p.ID] {
				ps.seen[p.ID] = true
				if ps.m.health.bad(p.ID) {
					ps.later = append(ps.later, p)
				} else {
					ps.queue = append(ps.queue, p)
				}
				ps.signal()
			}
			ps.mu.Unlock()
		}
		ps.mu.Lock()
		ps.open--
		ps.signal()
		ps.mu.Unlock()
	}()
	return nil
}

// signal wakes waiters; ps.mu is held.
func (ps *peerSet) signal() {
	close(ps.notify)
	ps.notify = make(chan struct{})
}

// usable drops unusable peers from the front of l; ps.mu is held.
func (ps *peerSet) usable(l []routing.Peer) []routing.Peer {
	for len(l) > 0 && (ps.failed[l[0].ID] || ps.q.has(l[0].ID)) {
		l = l[1:]
	}
	return l
}

// wait blocks until a usable peer is queued (true) or every lookup ended
// without one (false). Unhealthy peers count once every lookup ended.
func (ps *peerSet) wait(ctx context.Context) bool {
	for {
		ps.mu.Lock()
		ps.queue = ps.usable(ps.queue)
		if len(ps.queue) > 0 {
			ps.mu.Unlock()
			return true
		}
		if ps.open == 0 {
			ps.later = ps.usable(ps.later)
			ok := len(ps.later) > 0
			ps.mu.Unlock()
			return ok
		}
		n := ps.notify
		ps.mu.Unlock()
		select {
		case <-n:
		case <-ctx.Done():
			return false
		}
	}
}

// next returns a peer not tried yet, waiting for running lookups and, once
// they are exhausted, starting a fresh one. Only for when nothing else is
// in flight: it blocks.
func (ps *peerSet) next(ctx context.Context) (routing.Peer, bool) {
	if !ps.wait(ctx) && !(ps.mayRelook() && ps.relook(ctx) && ps.wait(ctx)) {
		return routing.Peer{}, false
	}
	return ps.poll()
}

// mayRelook reports whether a fresh lookup may help: not when every peer
// handed out so far was a probe of an unhealthy one.
func (ps *peerSet) mayRelook() bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.healthy || len(ps.probes) == 0
}

// poll returns a queued peer not tried yet, without waiting or looking up:
// a healthy one, or once every lookup ended an unhealthy one (a probe).
func (ps *peerSet) poll() (routing.Peer, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.queue = ps.usable(ps.queue); len(ps.queue) > 0 {
		p := ps.queue[0]
		ps.queue = ps.queue[1:]
		ps.failed[p.ID] = true // handed out once per request
		ps.healthy = true
		return p, true
	}
	if ps.later = ps.usable(ps.later); ps.open == 0 && len(ps.later) > 0 {
		p := ps.later[0]
		ps.later = ps.later[1:]
		ps.failed[p.ID] = true
		if ps.probes == nil {
			ps.probes = map[string]bool{}
			ps.probeEnd = time.Now().Add(ps.m.resolveTimeout)
		}
		ps.probes[p.ID] = true
		return p, true
	}
	return routing.Peer{}, false
}

// probe returns the time by which p must answer when it was handed out as
// a probe of an unhealthy peer.
func (ps *peerSet) probe(p routing.Peer) (time.Time, bool) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.probeEnd, ps.probes[p.ID]
}

// remaining returns the peers not tried yet, without taking them: the
// healthy ones first.
func (ps *peerSet) remaining() []routing.Peer {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return append(slices.Clone(ps.queue), ps.later...)
}

// changed returns a channel closed when a lookup queues a peer or ends.
func (ps *peerSet) changed() <-chan struct{} {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.notify
}

// relook starts a fresh lookup once the others are exhausted (a transfer
// that outlived its providers, e.g. a peer died mid-blob and another
// announced the key since). Peers already tried stay excluded.
func (ps *peerSet) relook(ctx context.Context) bool {
	ps.mu.Lock()
	if ps.relooks >= 2 {
		ps.mu.Unlock()
		return false
	}
	ps.relooks++
	for id := range ps.seen {
		if !ps.failed[id] {
			delete(ps.seen, id)
		}
	}
	ps.mu.Unlock()
	return ps.start(ctx, ps.m.resolveTimeout*5) == nil
}

// fail forgets a peer for this request and remembers it as unhealthy (it
// broke, stalled or misbehaved mid-transfer).
func (ps *peerSet) fail(p routing.Peer) {
	ps.skip(p)
	ps.m.health.fail(p.ID)
}

// requeue hands p out again in this request (after the peers queued): it
// was asked, but lost a hedge race rather than failing.
func (ps *peerSet) requeue(p routing.Peer) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	delete(ps.failed, p.ID)
	if ps.m.health.bad(p.ID) {
		ps.later = append(ps.later, p)
	} else {
		ps.queue = append(ps.queue, p)
	}
	ps.signal()
}

// skip forgets a peer for this request only.
func (ps *peerSet) skip(p routing.Peer) {
	ps.mu.Lock()
	ps.failed[p.ID] = true
	ps.mu.Unlock()
}

type answer struct {
	resp   *http.Response
	peer   routing.Peer
	err    error
	cancel context.CancelFunc
	idx    int
}

// first asks peers for path and returns the first usable response; the
// others are cancelled. It is a small state machine:
//
//   - start: the first peer (waiting for the lookup if need be);
//   - the hedge delay passes without a usable answer: another peer starts,
//     and the timer re-arms, so every delay adds one more peer, up to
//     maxPeers in flight (two stalled providers cost two delays, not the
//     response timeout);
//   - a hedge or a replacement is due but no peer is queued: it is owed,
//     and starts when a running lookup finds one. The loop never blocks in
//     a fresh lookup while a request is in flight: relooks are kept for
//     when every peer failed (a peer died and another announced since);
//   - an answer is unusable: the next queued peer starts at once; with
//     nothing queued and nothing in flight, wait for lookups, then relook;
//     with nothing left, fail (store.ErrNotFound).
//
// resume is set when the client already has headers and part of the body
// (a peer died mid-blob): an unhealthy provider is then given the
// slow-peer threshold to answer rather than the resolve budget.
func (m *Mirror) first(ctx context.Context, peers *peerSet, method, path string, off int64, resume bool) (*http.Response, routing.Peer, error) {
	results := make(chan answer, m.maxPeers)
	inflight := 0
	var lastErr error
	var cancels []context.CancelFunc
	var launched []routing.Peer // by idx; answered ones are zeroed
	hedge := time.NewTimer(m.hedgeDelay)
	defer hedge.Stop()
	launch := func(p routing.Peer) {
		rctx, cancel := context.WithCancel(ctx)
		idx := len(cancels)
		cancels = append(cancels, cancel)
		launched = append(launched, p)
		inflight++
		probeEnd, probe := peers.probe(p)
		if probe && resume {
			// Mid-blob an unhealthy provider is the client's last chance
			// (containerd reopens at the offset through sluice first): it
			// gets as long as a healthy answer may take (the slow-peer
			// threshold), not the resolve budget, and not the full
			// response timeout a dead host would cost.
			probeEnd = time.Now().Add(m.health.slowAfter)
		}
		go func() {
			start := time.Now()
			var expired *time.Timer
			if probe { // an unhealthy peer answers within the budget or not at all
				expired = time.AfterFunc(time.Until(probeEnd), cancel)
			}
			resp, err := m.send(rctx, p, method, path, off, peers.coalesce != "" && p.ID == peers.coalesce)
			if expired != nil && !expired.Stop() {
				if resp != nil {
					resp.Body.Close()
					resp = nil
				}
				err = errProbeExpired
			}
			m.health.noteAnswer(ctx, rctx, p, time.Since(start), err)
			results <- answer{resp: resp, peer: p, err: err, cancel: cancel, idx: idx}
		}()
		// Re-arm per start: the next hedge is one delay after this start;
		// probes share one short budget, so the next starts at once.
		hedge.Stop()
		if inflight < m.maxPeers {
			if probe {
				hedge.Reset(0)
			} else {
				hedge.Reset(m.hedgeDelay)
			}
		}
	}
	winner := -1
	defer func() {
		// Cancel the losers now, then drain them in the background. A
		// loser still in flight lost a race, it did not fail: it goes back
		// to the peer set, so a resume after the winner dies mid-blob can
		// ask it.
		for i, c := range cancels {
			if i != winner {
				c()
				if winner >= 0 && launched[i].ID != "" {
					peers.requeue(launched[i])
				}
			}
		}
		go func(n int) {
			for range n {
				a := <-results
				if a.resp != nil {
					a.resp.Body.Close()
				}
				a.cancel()
			}
		}(inflight)
	}()
	p, ok := peers.next(ctx)
	if !ok {
		return nil, routing.Peer{}, fmt.Errorf("no peer available: %w", store.ErrNotFound)
	}
	launch(p)
	// owed: a start is due and waits for a lookup to queue a peer;
	// owedHedge: it is a hedge (counted) rather than a replacement.
	owed, owedHedge := false, false
	for {
		var found <-chan struct{}
		if owed {
			found = peers.changed()
		}
		select {
		case a := <-results:
			inflight--
			launched[a.idx] = routing.Peer{}
			if a.err == nil {
				winner = a.idx
				a.resp.Body = newWatchdog(a.resp.Body, a.cancel, m.idleTimeout)
				return a.resp, a.peer, nil
			}
			a.cancel()
			lastErr = a.err
			m.log.Debug("peer request failed", "peer", a.peer.ID, "path", path, "err", a.err)
			if p, ok := peers.poll(); ok {
				launch(p)
				continue
			}
			if inflight > 0 {
				owed = true
				continue
			}
			if p, ok := peers.next(ctx); ok {
				owed, owedHedge = false, false
				launch(p)
				continue
			}
			return nil, routing.Peer{}, fmt.Errorf("every peer failed (last: %v): %w", lastErr, store.ErrNotFound)
		case <-hedge.C:
			if p, ok := peers.poll(); ok {
				m.metrics.HedgedFetches.Inc()
				launch(p)
			} else {
				owed, owedHedge = true, true
			}
		case <-found:
			if p, ok := peers.poll(); ok {
				if owedHedge {
					m.metrics.HedgedFetches.Inc()
				}
				owed, owedHedge = false, false
				launch(p)
			}
		case <-ctx.Done():
			return nil, routing.Peer{}, ctx.Err()
		}
	}
}

// do sends one request to a peer and accepts 200, or 206 for a resume.
func (m *Mirror) do(ctx context.Context, p routing.Peer, method, path string, off int64) (*http.Response, error) {
	return m.send(ctx, p, method, path, off, false)
}

// send is do, with the coalesce header when coalesce is true.
func (m *Mirror) send(ctx context.Context, p routing.Peer, method, path string, off int64, coalesce bool) (*http.Response, error) {
	if m.tlsOnly && p.Scheme != "https" {
		return nil, fmt.Errorf("peer %s announces %q but this node fetches from peers over https only", p.ID, p.Scheme)
	}
	req, err := http.NewRequestWithContext(ctx, method, p.URL()+path, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set(registry.PeerHeader, m.self)
	if coalesce {
		req.Header.Set(oci.CoalesceHeader, "1")
	}
	if strings.Contains(path, "/manifests/") {
		req.Header.Set("Accept", strings.Join(oci.ManifestAccept, ", "))
	}
	if off > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
		m.metrics.PeerRangeRequests.Inc()
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return nil, err
	}
	want := http.StatusOK
	if off > 0 {
		want = http.StatusPartialContent
	}
	if resp.StatusCode != want {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		return nil, &statusError{addr: p.Addr.String(), code: resp.StatusCode}
	}
	return resp, nil
}
