package routing

import (
	"context"
	"net/netip"
	"slices"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	ma "github.com/multiformats/go-multiaddr"
)

// Lookup streams the peers that provide key on the DHT. Each provider's
// registry address is resolved concurrently (NodeInfo from the cache, or
// asked over InfoProtocol), and peers are sent in the order they resolve.
// Providers whose address or NodeInfo cannot be had before ctx is done are
// skipped.
func (p *P2P) Lookup(ctx context.Context, key string, count int) (<-chan Peer, error) {
	c, err := KeyCID(key)
	if err != nil {
		return nil, err
	}
	out := make(chan Peer)
	ctx, cancel := context.WithCancel(ctx)
	// The local provider store lists this node too, and kad-dht counts it.
	want := 0
	if count > 0 {
		want = count + 1
	}
	provs := p.dht.FindProvidersAsync(ctx, c, want)
	go func() {
		defer close(out)
		defer cancel()
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			sent int
		)
		defer wg.Wait()
		for ai := range provs {
			if ai.ID == p.host.ID() {
				continue
			}
			wg.Go(func() {
				pr, ok := p.resolvePeer(ctx, ai)
				if !ok {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				if count > 0 && sent >= count {
					return
				}
				select {
				case out <- pr:
					sent++
					if count > 0 && sent >= count {
						cancel()
					}
				case <-ctx.Done():
				}
			})
		}
	}()
	return out, nil
}

// resolvePeer turns a provider record into a Peer: the IP from pickIP, the
// port and scheme from the provider's NodeInfo.
func (p *P2P) resolvePeer(ctx context.Context, ai peer.AddrInfo) (Peer, bool) {
	if len(ai.Addrs) > 0 {
		p.host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
	}
	info, err := p.info.get(ctx, ai.ID)
	if err != nil {
		if ctx.Err() == nil {
			p.log.Debug("resolve provider", "peer", ai.ID, "error", err)
		}
		return Peer{}, false
	}
	announced := slices.Concat(ai.Addrs, p.host.Peerstore().Addrs(ai.ID))
	var conns []ma.Multiaddr
	for _, c := range p.host.Network().ConnsToPeer(ai.ID) {
		conns = append(conns, c.RemoteMultiaddr())
	}
	ip, ok := pickIP(announced, conns, p.loopback)
	if !ok {
		p.log.Debug("resolve provider: no address", "peer", ai.ID)
		return Peer{}, false
	}
	return Peer{ID: ai.ID.String(), Addr: netip.AddrPortFrom(ip, info.RegistryPort), Scheme: info.Scheme}, true
}
