package routing

import (
	"context"
	"strings"
	"testing"
	"time"
)

func lookupIDs(t *testing.T, n *P2P, key string) map[string]bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	ch, err := n.Lookup(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, p := range collect(t, ch, 3*time.Second) {
		ids[p.ID] = true
	}
	return ids
}

// TestP2P_Leave: a node that leaves is no longer returned by its peers'
// lookups, although its provider records live on until their TTL; when
// it comes back (same key) and advertises again, it is found again.
func TestP2P_Leave(t *testing.T) {
	t.Parallel()
	a := newTestNode(t, "127.0.0.1", 5201, P2PConfig{})
	boot := []string{bootstrapAddr(t, a)}
	dir := t.TempDir()
	b := newTestNode(t, "127.0.0.2", 5202, P2PConfig{Bootstrap: boot, DataDir: dir})
	c := newTestNode(t, "127.0.0.3", 5203, P2PConfig{Bootstrap: boot})
	waitReady(t, a, b, c)
	key := "sha256:" + "cd34000000000000000000000000000000000000000000000000000000000000"
	if err := b.Advertise(t.Context(), []string{key}); err != nil {
		t.Fatal(err)
	}
	bid := b.ID().String()
	for _, n := range []*P2P{a, c} {
		if !lookupIDs(t, n, key)[bid] {
			t.Fatalf("before leaving: lookup on %s does not find B", n.ID())
		}
	}
	told, err := b.Leave(t.Context())
	if err != nil || told != 2 {
		t.Fatalf("Leave told %d peers (err %v), want 2", told, err)
	}
	for _, n := range []*P2P{a, c} {
		if ids := lookupIDs(t, n, key); ids[bid] {
			t.Errorf("after leaving: lookup on %s still finds B", n.ID())
		}
	}
	_ = b.Close()

	b2 := newTestNode(t, "127.0.0.2", 5202, P2PConfig{Bootstrap: boot, DataDir: dir})
	if b2.ID() != b.ID() {
		t.Fatal("restarted node has a new ID")
	}
	waitReady(t, b2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_ = b2.Advertise(t.Context(), []string{key})
		if lookupIDs(t, c, key)[bid] && lookupIDs(t, a, key)[bid] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("back after leaving: lookups do not find B again")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestP2P_Peers: the peer list names each peer with its connection and
// registry addresses, and marks one that left.
func TestP2P_Peers(t *testing.T) {
	t.Parallel()
	a := newTestNode(t, "127.0.0.1", 5211, P2PConfig{})
	b := newTestNode(t, "127.0.0.2", 5212, P2PConfig{Bootstrap: []string{bootstrapAddr(t, a)}})
	waitReady(t, a, b)
	var got PeerStatus
	deadline := time.Now().Add(5 * time.Second)
	for got.Registry == "" && time.Now().Before(deadline) {
		for _, ps := range a.Peers() {
			if ps.ID == b.ID().String() {
				got = ps
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !got.Connected || !got.InTable || got.Since.IsZero() || got.Registry != "http://127.0.0.2:5212" ||
		len(got.Addrs) == 0 || !strings.HasPrefix(got.Addrs[0], "/ip4/127.0.0.2/tcp/") || got.Left {
		t.Fatalf("A's view of B: %+v", got)
	}
	if _, err := b.Leave(t.Context()); err != nil {
		t.Fatal(err)
	}
	for _, ps := range a.Peers() {
		if ps.ID == b.ID().String() && (!ps.Left || ps.Registry != "") {
			t.Errorf("after B left: %+v, want left and no registry", ps)
		}
	}
}
