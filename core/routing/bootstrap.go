package routing

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ma "github.com/multiformats/go-multiaddr"
)

// Resolver resolves a DNS name to addresses; *net.Resolver implements it.
// Tests inject a fake that maps a name to 127.0.0.x.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// Bootstrap is one --bootstrap value: a static multiaddr with a peer ID, or
// dns:NAME:PORT whose A/AAAA records are the peers.
type Bootstrap struct {
	// Static is set for a multiaddr value.
	Static *peer.AddrInfo
	// Name and Port are set for a dns: value.
	Name string
	Port uint16
}

func (b Bootstrap) String() string {
	if b.Static != nil {
		return b.Static.String()
	}
	return "dns:" + b.Name + ":" + strconv.Itoa(int(b.Port))
}

// ParseBootstrap parses a --bootstrap value: "/ip4/10.0.0.7/tcp/5001/p2p/12D3…"
// or "dns:sluice.kube-system.svc:5001".
func ParseBootstrap(s string) (Bootstrap, error) {
	if rest, ok := strings.CutPrefix(s, "dns:"); ok {
		i := strings.LastIndex(rest, ":")
		if i <= 0 {
			return Bootstrap{}, fmt.Errorf("bootstrap %q: want dns:NAME:PORT", s)
		}
		port, err := strconv.ParseUint(rest[i+1:], 10, 16)
		if err != nil || port == 0 {
			return Bootstrap{}, fmt.Errorf("bootstrap %q: bad port", s)
		}
		return Bootstrap{Name: rest[:i], Port: uint16(port)}, nil
	}
	m, err := ma.NewMultiaddr(s)
	if err != nil {
		return Bootstrap{}, fmt.Errorf("bootstrap %q: %w", s, err)
	}
	ai, err := peer.AddrInfoFromP2pAddr(m)
	if err != nil {
		return Bootstrap{}, fmt.Errorf("bootstrap %q: want /ip4/…/tcp/…/p2p/ID or dns:NAME:PORT: %w", s, err)
	}
	return Bootstrap{Static: ai}, nil
}

// dnsBootstrapDials bounds the addresses of one dns: entry asked for their
// peer ID per bootstrap round. A headless service names every node: during
// a rolling restart of N nodes, dialling all of them would cost N²
// handshakes, while one live peer is enough to join the DHT.
const dnsBootstrapDials = 4

// bootstrapPeers returns the peers of every bootstrap entry, other than
// self. DNS names are resolved and a random subset of at most
// dnsBootstrapDials addresses is asked for its peer ID (discoverPeerID), a
// new subset every round; entries that fail are reported in the joined
// error while the others are still returned.
func (p *P2P) bootstrapPeers(ctx context.Context) ([]peer.AddrInfo, error) {
	var (
		mu   sync.Mutex
		out  []peer.AddrInfo
		errs []error
		wg   sync.WaitGroup
	)
	add := func(ai peer.AddrInfo, err error) {
		mu.Lock()
		defer mu.Unlock()
		if err != nil {
			errs = append(errs, err)
			return
		}
		if ai.ID != p.host.ID() {
			out = append(out, ai)
		}
	}
	for _, b := range p.bootstrap {
		if b.Static != nil {
			add(*b.Static, nil)
			continue
		}
		ips, err := p.resolver.LookupNetIP(ctx, "ip", b.Name)
		if err != nil {
			add(peer.AddrInfo{}, fmt.Errorf("bootstrap %s: %w", b, err))
			continue
		}
		for _, ap := range p.dnsSubset(ips, b.Port) {
			wg.Go(func() {
				id, err := discoverPeerID(ctx, ap, p.psk, p.key)
				if err != nil {
					add(peer.AddrInfo{}, fmt.Errorf("bootstrap %s: %w", b, err))
					return
				}
				m, err := ma.NewMultiaddr(tcpMultiaddr(ap))
				add(peer.AddrInfo{ID: id, Addrs: []ma.Multiaddr{m}}, err)
			})
		}
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// dnsSubset returns at most dnsBootstrapDials of ips (with port), other
// than this node's own addresses, chosen at random.
func (p *P2P) dnsSubset(ips []netip.Addr, port uint16) []netip.AddrPort {
	aps := make([]netip.AddrPort, 0, len(ips))
	for _, ip := range ips {
		if ap := netip.AddrPortFrom(ip.Unmap(), port); !p.isSelf(ap) {
			aps = append(aps, ap)
		}
	}
	rand.Shuffle(len(aps), func(i, j int) { aps[i], aps[j] = aps[j], aps[i] })
	return aps[:min(len(aps), dnsBootstrapDials)]
}

func tcpMultiaddr(ap netip.AddrPort) string {
	proto := "/ip4/"
	if ap.Addr().Is6() {
		proto = "/ip6/"
	}
	return proto + ap.Addr().String() + "/tcp/" + strconv.Itoa(int(ap.Port()))
}

// isSelf reports whether ap is one of this node's listen addresses.
func (p *P2P) isSelf(ap netip.AddrPort) bool {
	for _, a := range p.host.Addrs() {
		if got, ok := maAddrPort(a); ok && got == ap {
			return true
		}
	}
	return false
}

// maAddrPort returns the IP and TCP port of /ip4|ip6/…/tcp/… multiaddrs.
func maAddrPort(a ma.Multiaddr) (netip.AddrPort, bool) {
	ip, ok := maIP(a)
	if !ok {
		return netip.AddrPort{}, false
	}
	s, err := a.ValueForProtocol(ma.P_TCP)
	if err != nil {
		return netip.AddrPort{}, false
	}
	port, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip, uint16(port)), true
}

// bootstrapOnce connects to every bootstrap peer and asks the DHT to fill
// its routing table. It returns how many peers it connected to.
func (p *P2P) bootstrapOnce(ctx context.Context) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	peers, err := p.bootstrapPeers(ctx)
	p.alone.Store(len(peers) == 0 && err == nil)
	var (
		mu        sync.Mutex
		connected int
		errs      = []error{err}
		wg        sync.WaitGroup
	)
	for _, ai := range peers {
		wg.Go(func() {
			cerr := p.host.Connect(ctx, ai)
			mu.Lock()
			defer mu.Unlock()
			if cerr != nil {
				errs = append(errs, fmt.Errorf("connect %s: %w", ai.ID, cerr))
				return
			}
			connected++
		})
	}
	wg.Wait()
	if connected > 0 {
		if berr := p.dht.Bootstrap(ctx); berr != nil {
			errs = append(errs, berr)
		}
	}
	return connected, errors.Join(errs...)
}

// runBootstrap keeps the node joined: while the routing table is empty it
// bootstraps with exponential backoff (from minBackoff to the check
// interval); once joined it checks every interval and bootstraps again if
// the table has emptied. It returns when ctx is done.
func (p *P2P) runBootstrap(ctx context.Context) {
	if len(p.bootstrap) == 0 {
		p.alone.Store(true)
		return
	}
	const minBackoff = 250 * time.Millisecond
	backoff := minBackoff
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		wait := p.checkInterval
		if p.dht.RoutingTable().Size() == 0 {
			n, err := p.bootstrapOnce(ctx)
			if err != nil && ctx.Err() == nil {
				p.log.Debug("bootstrap", "connected", n, "error", err)
			}
			if n == 0 || p.dht.RoutingTable().Size() == 0 {
				wait = min(backoff, p.checkInterval)
				backoff = min(backoff*2, p.checkInterval)
			} else {
				p.log.Info("bootstrapped", "connected", n)
				backoff = minBackoff
			}
		}
		t.Reset(wait)
	}
}
