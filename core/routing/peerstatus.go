package routing

import (
	"net/netip"
	"slices"
	"strings"
	"time"
)

// PeerStatus is what this node knows of one peer, for status pages.
type PeerStatus struct {
	ID string `json:"id"`
	// Addrs are the remote addresses of the open connections, else the
	// addresses the peerstore holds.
	Addrs []string `json:"addrs"`
	// Registry is the peer's registry URL, when its NodeInfo is known.
	Registry string `json:"registry,omitempty"`
	// Connected is whether a connection is open; Since when the oldest
	// open one was opened.
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	// InTable is whether the peer is in the DHT routing table.
	InTable bool `json:"in_table"`
	// Left is whether the peer said it left (LeaveProtocol).
	Left bool `json:"left"`
}

// Peers lists the peers in the routing table and those connected, sorted
// by ID.
func (p *P2P) Peers() []PeerStatus {
	table := p.dht.RoutingTable().ListPeers()
	ids := slices.Concat(table, p.host.Network().Peers())
	slices.Sort(ids)
	ids = slices.Compact(ids)
	out := make([]PeerStatus, 0, len(ids))
	for _, id := range ids {
		ps := PeerStatus{ID: id.String(), InTable: slices.Contains(table, id), Left: p.departed.has(id)}
		var connIP netip.Addr
		for _, c := range p.host.Network().ConnsToPeer(id) {
			ps.Connected = true
			ps.Addrs = append(ps.Addrs, c.RemoteMultiaddr().String())
			if o := c.Stat().Opened; ps.Since.IsZero() || o.Before(ps.Since) {
				ps.Since = o
			}
			if ip, ok := maIP(c.RemoteMultiaddr()); ok {
				connIP = ip
			}
		}
		if !ps.Connected {
			for _, a := range p.host.Peerstore().Addrs(id) {
				ps.Addrs = append(ps.Addrs, a.String())
			}
		}
		slices.Sort(ps.Addrs)
		ps.Addrs = slices.Compact(ps.Addrs)
		if info, ok := p.info.cached(id); ok {
			ip := connIP
			if a, err := netip.ParseAddr(info.RegistryIP); err == nil {
				ip = a
			}
			if ip.IsValid() {
				ps.Registry = info.Scheme + "://" + netip.AddrPortFrom(ip, info.RegistryPort).String()
			}
		}
		out = append(out, ps)
	}
	slices.SortFunc(out, func(a, b PeerStatus) int { return strings.Compare(a.ID, b.ID) })
	return out
}
