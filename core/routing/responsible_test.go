package routing

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	kb "github.com/libp2p/go-libp2p-kbucket"
	"github.com/libp2p/go-libp2p/core/peer"
)

// closestOf is the brute-force answer: the ID of ids closest to key.
func closestOf(t *testing.T, key string, ids []string, conv func(string) kb.ID) string {
	t.Helper()
	_, target, err := keyTarget(key)
	if err != nil {
		t.Fatal(err)
	}
	best := ids[0]
	for _, id := range ids[1:] {
		if closer(conv(id), conv(best), target) {
			best = id
		}
	}
	return best
}

func testKeys(n int) []string {
	keys := []string{"docker.io/library/nginx:1.27", "registry.k8s.io/pause:3.10"}
	for i := range n {
		keys = append(keys, fmt.Sprintf("sha256:%064x", i*7919+1))
	}
	return keys
}

func TestMemoryNode_Responsible(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	names := []string{"node-a", "node-b", "node-c", "node-d", "node-e"}
	var nodes []*MemoryNode
	for i, name := range names {
		nodes = append(nodes, m.Node(name, netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}), 5000)))
	}
	owners := map[string]int{}
	for _, key := range testKeys(40) {
		want := closestOf(t, key, names, func(s string) kb.ID { return kb.ConvertKey(s) })
		owners[want]++
		selves := 0
		for _, n := range nodes {
			p, self, err := n.Responsible(t.Context(), key)
			if err != nil {
				t.Fatal(err)
			}
			if p.ID != want {
				t.Errorf("%s: Responsible(%q) = %s, want %s", n.peer.ID, key, p.ID, want)
			}
			if self != (n.peer.ID == want) {
				t.Errorf("%s: Responsible(%q) self = %v", n.peer.ID, key, self)
			}
			if self {
				selves++
			}
		}
		if selves != 1 {
			t.Errorf("%q: %d nodes think they are responsible, want 1", key, selves)
		}
	}
	if len(owners) < 3 {
		t.Errorf("42 keys spread over %d of 5 nodes: %v", len(owners), owners)
	}
	if _, _, err := nodes[0].Responsible(t.Context(), "not a key"); err == nil {
		t.Error("an invalid key was accepted")
	}
}

func TestP2P_Responsible(t *testing.T) {
	t.Parallel()
	a, b, c := threeNodes(t, nil)
	nodes := []*P2P{a, b, c}
	ids := []string{string(a.ID()), string(b.ID()), string(c.ID())}
	conv := func(s string) kb.ID { return kb.ConvertPeerID(peer.ID(s)) }
	keys := testKeys(20)
	// B and C bootstrap from A and meet each other through the DHT: wait
	// until every routing table holds the two others.
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for n.dht.RoutingTable().Size() < 2 {
			if time.Now().After(deadline) {
				t.Fatalf("%s knows %d nodes", n.ID(), n.dht.RoutingTable().Size())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check := func(t *testing.T, nodes []*P2P, ids []string) {
		t.Helper()
		for _, key := range keys {
			want := closestOf(t, key, ids, conv)
			for _, n := range nodes {
				p, self, err := n.Responsible(t.Context(), key)
				if err != nil {
					t.Fatal(err)
				}
				switch {
				case self && string(n.ID()) != want:
					t.Errorf("%s claims %q, want %s", n.ID(), key, peer.ID(want))
				case !self && p.ID != peer.ID(want).String():
					t.Errorf("%s: Responsible(%q) = %s, want %s", n.ID(), key, p.ID, peer.ID(want))
				case !self && !p.Addr.IsValid():
					t.Errorf("%s: responsible node %s has no registry address", n.ID(), p.ID)
				}
			}
		}
	}
	check(t, nodes, ids)

	// A node that goes away stops being responsible on every other node
	// as soon as they lose their connections to it.
	_ = c.Close()
	deadline = time.Now().Add(10 * time.Second)
	for _, n := range []*P2P{a, b} {
		for len(n.host.Network().ConnsToPeer(c.ID())) > 0 {
			if time.Now().After(deadline) {
				t.Fatal("connections to a closed node stay up")
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	check(t, []*P2P{a, b}, ids[:2])
}
