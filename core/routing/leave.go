package routing

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
)

// LeaveProtocol is how a node that shuts down withdraws its provider
// records. Kademlia has no un-provide: the records of a node that left
// live on its peers until their TTL (30 minutes), and every Lookup until
// then would name a node that is gone. So a leaving node opens one stream
// of this protocol to each connected peer and closes it; the peer then
// skips that node in Lookup until it connects again (a restart), and
// forgets its NodeInfo.
const LeaveProtocol protocol.ID = "/sluice/leave/1.0.0"

// departures are the peers that said they left, with when.
type departures struct {
	mu  sync.Mutex
	m   map[peer.ID]time.Time
	ttl time.Duration // after this the records are gone anyway
}

func (d *departures) add(id peer.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.m[id] = time.Now()
}

func (d *departures) remove(id peer.ID) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, id)
}

func (d *departures) has(id peer.ID) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	at, ok := d.m[id]
	if ok && time.Since(at) > d.ttl {
		delete(d.m, id)
		return false
	}
	return ok
}

// startLeave serves LeaveProtocol and clears a departure when the peer
// connects again after all its connections had closed.
func (p *P2P) startLeave(ctx context.Context, ttl time.Duration) error {
	p.departed = &departures{m: map[peer.ID]time.Time{}, ttl: ttl}
	sub, err := p.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged))
	if err != nil {
		return fmt.Errorf("subscribe to connectedness events: %w", err)
	}
	p.host.SetStreamHandler(LeaveProtocol, func(st network.Stream) {
		id := st.Conn().RemotePeer()
		p.departed.add(id)
		p.info.forget(id)
		p.log.Info("peer left; no longer a provider", "peer", id)
		_ = st.Close()
	})
	p.wg.Go(func() {
		defer sub.Close()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-sub.Out():
				if !ok {
					return
				}
				if ev, _ := e.(event.EvtPeerConnectednessChanged); ev.Connectedness == network.Connected {
					p.departed.remove(ev.Peer)
				}
			}
		}
	})
	return nil
}

// Leave tells every connected peer that this node is leaving: they stop
// returning it from Lookup at once instead of when its records expire.
// Call it after the advertiser stopped and before Close. It returns how
// many peers were told, and an error naming those that could not be.
func (p *P2P) Leave(ctx context.Context) (int, error) {
	var (
		mu   sync.Mutex
		told int
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, 16)
	for _, id := range slices.Compact(slices.Sorted(slices.Values(p.host.Network().Peers()))) {
		if ok, _ := p.host.Peerstore().SupportsProtocols(id, LeaveProtocol); len(ok) == 0 {
			continue // not a sluice node (or one from before this protocol)
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			err := p.sayLeave(ctx, id)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("tell %s: %w", id, err))
				return
			}
			told++
		})
	}
	wg.Wait()
	return told, errors.Join(errs...)
}

func (p *P2P) sayLeave(ctx context.Context, id peer.ID) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := p.host.NewStream(ctx, id, LeaveProtocol)
	if err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(d)
	}
	// The peer records the departure, then closes: wait for that, so the
	// departure is in place when Leave returns.
	if err := st.CloseWrite(); err != nil {
		_ = st.Reset()
		return err
	}
	var b [1]byte
	_, _ = st.Read(b[:])
	return st.Close()
}
