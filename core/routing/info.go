package routing

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
	manet "github.com/multiformats/go-multiaddr/net"
)

// InfoProtocol is the libp2p protocol on which a node tells a peer where
// its registry listens. The answer is one JSON object, NodeInfo, after which
// the node closes the stream. Nodes fetch it when identify completes with a
// peer that speaks it, and on demand in Lookup, and cache it per peer ID.
// The registry IP is not part of it: it is the address the peer is reached
// on over libp2p, so the answer is the same on every interface.
const InfoProtocol protocol.ID = "/sluice/info/1.0.0"

// maxInfoSize bounds an InfoProtocol answer.
const maxInfoSize = 4 << 10

// NodeInfo is the InfoProtocol answer.
type NodeInfo struct {
	// RegistryPort is the TCP port of the node's registry (--registry-addr).
	RegistryPort uint16 `json:"registry_port"`
	// Scheme is "http" or "https".
	Scheme string `json:"scheme"`
	// RegistryIP is set when the registry listens on one IP only: peers
	// must use it. Absent when it listens on every interface.
	RegistryIP string `json:"registry_ip,omitempty"`
}

func (i NodeInfo) valid() error {
	if i.RegistryPort == 0 {
		return fmt.Errorf("registry port is 0")
	}
	if i.Scheme != "http" && i.Scheme != "https" {
		return fmt.Errorf("scheme %q is not http or https", i.Scheme)
	}
	if i.RegistryIP != "" {
		ip, err := netip.ParseAddr(i.RegistryIP)
		if err != nil {
			return fmt.Errorf("registry ip: %w", err)
		}
		if ip.IsUnspecified() || ip.IsMulticast() || ip.Zone() != "" {
			return fmt.Errorf("registry ip %s is not a unicast address", ip)
		}
	}
	return nil
}

// infoService serves this node's NodeInfo and caches that of peers.
type infoService struct {
	h    host.Host
	self NodeInfo

	mu    sync.Mutex
	cache map[peer.ID]NodeInfo
}

func newInfoService(h host.Host, self NodeInfo) *infoService {
	s := &infoService{h: h, self: self, cache: map[peer.ID]NodeInfo{}}
	h.SetStreamHandler(InfoProtocol, s.handle)
	return s
}

func (s *infoService) handle(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(5 * time.Second))
	if err := json.NewEncoder(st).Encode(s.self); err != nil {
		_ = st.Reset()
	}
}

// cached returns the cached NodeInfo of p.
func (s *infoService) cached(p peer.ID) (NodeInfo, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.cache[p]
	return i, ok
}

// forget drops the cached NodeInfo of p.
func (s *infoService) forget(p peer.ID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.cache, p)
}

// get returns the NodeInfo of p, from the cache or by asking p.
func (s *infoService) get(ctx context.Context, p peer.ID) (NodeInfo, error) {
	if i, ok := s.cached(p); ok {
		return i, nil
	}
	return s.fetch(ctx, p)
}

// fetch asks p for its NodeInfo and caches the answer.
func (s *infoService) fetch(ctx context.Context, p peer.ID) (NodeInfo, error) {
	st, err := s.h.NewStream(ctx, p, InfoProtocol)
	if err != nil {
		return NodeInfo{}, fmt.Errorf("open %s to %s: %w", InfoProtocol, p, err)
	}
	defer st.Close()
	deadline := time.Now().Add(5 * time.Second)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = st.SetDeadline(deadline)
	var i NodeInfo
	if err := json.NewDecoder(io.LimitReader(st, maxInfoSize)).Decode(&i); err != nil {
		_ = st.Reset()
		return NodeInfo{}, fmt.Errorf("read %s from %s: %w", InfoProtocol, p, err)
	}
	if err := i.valid(); err != nil {
		return NodeInfo{}, fmt.Errorf("%s from %s: %w", InfoProtocol, p, err)
	}
	s.mu.Lock()
	s.cache[p] = i
	s.mu.Unlock()
	return i, nil
}

// maIP returns the IP of a multiaddr that starts with /ip4 or /ip6.
func maIP(a ma.Multiaddr) (netip.Addr, bool) {
	ip, err := manet.ToIP(a)
	if err != nil {
		return netip.Addr{}, false
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	addr = addr.Unmap()
	if addr.IsUnspecified() || addr.IsMulticast() {
		return netip.Addr{}, false
	}
	return addr, true
}

// pickIP chooses the IP to reach a peer's registry on when there is no
// live connection to it on one of its announced addresses. announced are
// the peer's libp2p addresses (provider record and peerstore), conns the
// remote addresses of connections to it, self this node's own IPs.
// Announced IPs that this node announces too are skipped while others
// remain: docker0, cni0 and kube-ipvs0 carry the same addresses on every
// node, and they lead back to the requester itself. Then a connection on an
// announced IP wins (that path works); then the first announced IP of the
// same kind as ours (loopback or not), so nodes on 127.0.0.x find each
// other while nodes on a LAN skip the peer's loopback; then any announced
// IP; then the connection's IP.
func pickIP(announced, conns []ma.Multiaddr, selfLoopback bool, self []netip.Addr) (netip.Addr, bool) {
	seen := map[netip.Addr]bool{}
	var ips, shared []netip.Addr
	for _, a := range announced {
		// Announcements are the peer's word: a link-local one (the cloud
		// metadata service at 169.254.169.254) is never fetched from.
		if ip, ok := maIP(a); ok && !seen[ip] && !ip.IsLinkLocalUnicast() {
			seen[ip] = true
			if slices.Contains(self, ip) {
				shared = append(shared, ip)
			} else {
				ips = append(ips, ip)
			}
		}
	}
	if len(ips) == 0 {
		ips = shared
	}
	var connIPs []netip.Addr
	for _, c := range conns {
		if ip, ok := maIP(c); ok {
			if slices.Contains(ips, ip) {
				return ip, true
			}
			connIPs = append(connIPs, ip)
		}
	}
	for _, ip := range ips {
		if ip.IsLoopback() == selfLoopback {
			return ip, true
		}
	}
	if len(ips) > 0 {
		return ips[0], true
	}
	if len(connIPs) > 0 {
		return connIPs[0], true
	}
	return netip.Addr{}, false
}
