package routing

import (
	"bytes"
	"context"
	"fmt"
	"slices"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
)

// Responsibler is implemented by routers that can name the node
// responsible for a key: the one whose ID is closest to the key in the
// Kademlia XOR metric (sha256 of the peer ID against sha256 of the key's
// CID multihash, as kad-dht measures distance), among this node and the
// nodes it knows. Every node computes it alike, so all requesters of a key
// meet at one node without any central state (issue 11: rollouts).
type Responsibler interface {
	// Responsible returns the responsible node for key; self reports that
	// it is this node (then p is this node's own Peer as far as known, and
	// may be the zero Peer).
	Responsible(ctx context.Context, key string) (p Peer, self bool, err error)
}

var (
	_ Responsibler = (*P2P)(nil)
	_ Responsibler = (*MemoryNode)(nil)
)

// keyTarget is the point of the XOR keyspace a key lives at: sha256 of the
// multihash of its CID, the distance kad-dht uses for provider records.
func keyTarget(key string) (string, kb.ID, error) {
	c, err := KeyCID(key)
	if err != nil {
		return "", nil, err
	}
	mh := string(c.Hash())
	return mh, kb.ConvertKey(mh), nil
}

// closer reports whether a is strictly closer to target than b.
func closer(a, b, target kb.ID) bool {
	return bytes.Compare(kb.Xor(a, target), kb.Xor(b, target)) < 0
}

// Responsible picks among this node and the peers it is connected to. In
// a cluster smaller than a k-bucket every node's routing table holds every
// other node, so the table is the whole candidate set and the answer costs
// no network round trip; a larger routing table asks the DHT for the
// closest peers (a Kademlia node lookup, bounded by ctx) and picks among
// those. Peers that said they left, and peers this node holds no
// connection to (a node killed minutes ago may linger in a routing table;
// every node loses its connections to it at once) are skipped, so that all
// nodes still agree.
func (p *P2P) Responsible(ctx context.Context, key string) (Peer, bool, error) {
	mh, target, err := keyTarget(key)
	if err != nil {
		return Peer{}, false, err
	}
	rt := p.dht.RoutingTable()
	candidates := rt.ListPeers()
	if rt.Size() >= kbBucketSize {
		found, err := p.dht.GetClosestPeers(ctx, mh)
		if err != nil && len(found) == 0 {
			return Peer{}, false, fmt.Errorf("closest peers of %q: %w", key, err)
		}
		candidates = append(candidates, found...)
	}
	self := p.host.ID()
	best, bestID := self, kb.ConvertPeerID(self)
	for _, id := range candidates {
		if id == self || p.departed.has(id) || p.host.Network().Connectedness(id) != network.Connected {
			continue
		}
		if cid := kb.ConvertPeerID(id); closer(cid, bestID, target) {
			best, bestID = id, cid
		}
	}
	if best == self {
		return Peer{}, true, nil
	}
	pr, ok := p.resolvePeer(ctx, peer.AddrInfo{ID: best})
	if !ok {
		return Peer{}, false, fmt.Errorf("responsible node %s for %q: registry address unknown", best, key)
	}
	return pr, false, nil
}

// kbBucketSize is kad-dht's default k (bucket size, closest peers
// returned): below it a routing table holds every node it knows.
const kbBucketSize = 20

// Responsible picks among every node of the network, n included, by the
// same metric as the P2P backend (sha256 of the node name against the
// key's target).
func (n *MemoryNode) Responsible(ctx context.Context, key string) (Peer, bool, error) {
	if err := ctx.Err(); err != nil {
		return Peer{}, false, err
	}
	_, target, err := keyTarget(key)
	if err != nil {
		return Peer{}, false, err
	}
	m := n.net
	m.mu.Lock()
	defer m.mu.Unlock()
	ids := make([]string, 0, len(m.nodes)+1)
	for id := range m.nodes {
		ids = append(ids, id)
	}
	if !slices.Contains(ids, n.peer.ID) {
		ids = append(ids, n.peer.ID)
	}
	slices.Sort(ids)
	best := ids[0]
	for _, id := range ids[1:] {
		if closer(kb.ConvertKey(id), kb.ConvertKey(best), target) {
			best = id
		}
	}
	if best == n.peer.ID {
		return n.peer, true, nil
	}
	return m.nodes[best].peer, false, nil
}
