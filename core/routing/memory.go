package routing

import (
	"context"
	"net/netip"
	"slices"
	"sync"
)

// Memory is an in-process network of routers for tests: every node created
// by Node sees the announcements of the others, with the semantics of the
// P2P backend (Lookup never returns self, streams, honours count and ctx;
// Ready is true once another node exists). Unlike the DHT, Withdraw takes
// effect at once.
type Memory struct {
	mu    sync.Mutex
	nodes map[string]*MemoryNode
	// providers maps a key to the IDs of the nodes announcing it, in
	// announcement order.
	providers map[string][]string
}

// NewMemory returns an empty in-memory network.
func NewMemory() *Memory {
	return &Memory{nodes: map[string]*MemoryNode{}, providers: map[string][]string{}}
}

// MemoryNode is one node of a Memory network.
type MemoryNode struct {
	net  *Memory
	peer Peer
}

var (
	_ Router      = (*MemoryNode)(nil)
	_ PeerCounter = (*MemoryNode)(nil)
)

// Node adds a node named id whose registry listens on addr (scheme http)
// and returns its router. Adding an existing id replaces its address.
func (m *Memory) Node(id string, addr netip.AddrPort) *MemoryNode {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := &MemoryNode{net: m, peer: Peer{ID: id, Addr: addr, Scheme: "http"}}
	m.nodes[id] = n
	return n
}

// Peer returns how other nodes see this node.
func (n *MemoryNode) Peer() Peer { return n.peer }

// Close removes the node from the network with all its announcements.
func (n *MemoryNode) Close() error {
	m := n.net
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.nodes[n.peer.ID] == n {
		delete(m.nodes, n.peer.ID)
	}
	for k, ids := range m.providers {
		m.providers[k] = slices.DeleteFunc(ids, func(id string) bool { return id == n.peer.ID })
	}
	return nil
}

// PeerCount returns the number of other nodes in the network.
func (n *MemoryNode) PeerCount() int {
	n.net.mu.Lock()
	defer n.net.mu.Unlock()
	c := len(n.net.nodes)
	if _, ok := n.net.nodes[n.peer.ID]; ok {
		c--
	}
	return c
}

// Ready reports whether another node is in the network.
func (n *MemoryNode) Ready(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return n.PeerCount() > 0, nil
}

// Lookup streams the nodes that announced key, other than n.
func (n *MemoryNode) Lookup(ctx context.Context, key string, count int) (<-chan Peer, error) {
	if err := ValidateKey(key); err != nil {
		return nil, err
	}
	m := n.net
	m.mu.Lock()
	var found []Peer
	for _, id := range m.providers[key] {
		if id == n.peer.ID {
			continue
		}
		if p, ok := m.nodes[id]; ok {
			found = append(found, p.peer)
		}
		if count > 0 && len(found) == count {
			break
		}
	}
	m.mu.Unlock()
	out := make(chan Peer, len(found))
	for _, p := range found {
		out <- p
	}
	close(out)
	return out, nil
}

// Advertise announces keys for n.
func (n *MemoryNode) Advertise(ctx context.Context, keys []string) error {
	if err := validateKeys(keys); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m := n.net
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		if !slices.Contains(m.providers[k], n.peer.ID) {
			m.providers[k] = append(m.providers[k], n.peer.ID)
		}
	}
	return nil
}

// Withdraw removes n's announcements of keys.
func (n *MemoryNode) Withdraw(ctx context.Context, keys []string) error {
	if err := validateKeys(keys); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m := n.net
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, k := range keys {
		m.providers[k] = slices.DeleteFunc(m.providers[k], func(id string) bool { return id == n.peer.ID })
		if len(m.providers[k]) == 0 {
			delete(m.providers, k)
		}
	}
	return nil
}

// Providers returns the IDs of the nodes announcing key (for assertions).
func (m *Memory) Providers(key string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.providers[key])
}

func validateKeys(keys []string) error {
	for _, k := range keys {
		if err := ValidateKey(k); err != nil {
			return err
		}
	}
	return nil
}
