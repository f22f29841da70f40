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
			if ai.ID == p.host.ID() || p.departed.has(ai.ID) {
				continue // a node that left keeps its records on peers until they expire
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

// resolvePeer turns a provider record into a Peer: the port and scheme
// from the provider's NodeInfo, and the IP the provider's registry
// listens on when it binds one, else the IP of a working libp2p
// connection to it. Without a connection on one of its announced
// addresses it is dialled (libp2p tries every announced address and keeps
// one that answers), so a dead or shared address (docker0, an address
// nothing listens on) is never picked while a working one exists. A
// provider whose every address fails is dead and skipped; pickIP is the
// fallback when the dial is cut short by ctx.
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
	mk := func(ip netip.Addr) Peer {
		return Peer{ID: ai.ID.String(), Addr: netip.AddrPortFrom(ip, info.RegistryPort), Scheme: info.Scheme}
	}
	self := p.selfIPs()
	if info.RegistryIP != "" {
		// A claim the peer makes about itself: never one that sends our
		// fetch to ourselves or to a link-local service (metadata).
		if ip, err := netip.ParseAddr(info.RegistryIP); err == nil && claimable(ip, p.loopback, self) {
			return mk(ip), true
		}
		p.log.Debug("resolve provider: registry ip refused", "peer", ai.ID, "registry_ip", info.RegistryIP)
	}
	announced := slices.Concat(ai.Addrs, p.host.Peerstore().Addrs(ai.ID))
	if ip, ok := p.liveIP(ai.ID, announced, self); ok {
		return mk(ip), true
	}
	if err := p.host.Connect(ctx, peer.AddrInfo{ID: ai.ID}); err == nil {
		if ip, ok := p.liveIP(ai.ID, announced, self); ok {
			return mk(ip), true
		}
	} else if ctx.Err() == nil {
		// Every announced address refused or failed before the budget
		// ran out: the node is gone (its records outlive it by up to
		// RecordTTL). Offering it would send the fetch to a dead
		// registry; only a dial cut short by the budget falls back to an
		// announced address.
		p.log.Debug("resolve provider: dial", "peer", ai.ID, "error", err)
		return Peer{}, false
	}
	var conns []ma.Multiaddr
	for _, c := range p.host.Network().ConnsToPeer(ai.ID) {
		conns = append(conns, c.RemoteMultiaddr())
	}
	ip, ok := pickIP(announced, conns, p.loopback, self)
	if !ok {
		p.log.Debug("resolve provider: no address", "peer", ai.ID)
		return Peer{}, false
	}
	return mk(ip), true
}

// liveIP returns the remote IP of a connection to id that is one of its
// announced IPs and not one of ours: a path that works and leads to id.
func (p *P2P) liveIP(id peer.ID, announced []ma.Multiaddr, self []netip.Addr) (netip.Addr, bool) {
	for _, c := range p.host.Network().ConnsToPeer(id) {
		ip, ok := maIP(c.RemoteMultiaddr())
		if !ok || slices.Contains(self, ip) {
			continue
		}
		for _, a := range announced {
			if aip, ok := maIP(a); ok && aip == ip {
				return ip, true
			}
		}
	}
	return netip.Addr{}, false
}

// selfIPs returns the IPs this node announces.
func (p *P2P) selfIPs() []netip.Addr {
	var out []netip.Addr
	for _, a := range p.host.Addrs() {
		if ip, ok := maIP(a); ok {
			out = append(out, ip)
		}
	}
	return out
}

// claimable reports whether a peer may name ip as its registry's address:
// not link-local (169.254.169.254 is a cloud metadata service), not one of
// this node's own IPs, and loopback only among nodes on loopback.
func claimable(ip netip.Addr, selfLoopback bool, self []netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(), slices.Contains(self, ip):
		return false
	case ip.IsLoopback():
		return selfLoopback
	}
	return true
}
