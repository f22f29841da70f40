package routing

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func TestMemory(t *testing.T) {
	t.Parallel()
	m := NewMemory()
	a := m.Node("a", netip.MustParseAddrPort("127.0.0.1:5001"))
	if ok, _ := a.Ready(t.Context()); ok {
		t.Fatal("lone node ready")
	}
	b := m.Node("b", netip.MustParseAddrPort("127.0.0.2:5002"))
	c := m.Node("c", netip.MustParseAddrPort("127.0.0.3:5003"))
	if ok, _ := a.Ready(t.Context()); !ok || a.PeerCount() != 2 {
		t.Fatalf("Ready = %v, PeerCount = %d; want true, 2", ok, a.PeerCount())
	}
	key := TagKey("docker.io", "library/nginx", "1.27")
	for _, n := range []*MemoryNode{a, b} {
		if err := n.Advertise(t.Context(), []string{key}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		from  *MemoryNode
		count int
		want  []string
	}{
		{"all from c", c, 0, []string{"a", "b"}},
		{"count 1", c, 1, []string{"a"}},
		{"never self", a, 0, []string{"b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ch, err := tc.from.Lookup(t.Context(), key, tc.count)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for p := range ch {
				got = append(got, p.ID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("Lookup = %v, want %v", got, tc.want)
			}
		})
	}
	if err := a.Withdraw(t.Context(), []string{key}); err != nil {
		t.Fatal(err)
	}
	ch, _ := c.Lookup(t.Context(), key, 0)
	got := collect(t, ch, time.Second)
	if len(got) != 1 || got[0] != b.Peer() || got[0].URL() != "http://127.0.0.2:5002" {
		t.Fatalf("after withdraw Lookup = %v, want only b", got)
	}
	_ = b.Close()
	ch, _ = c.Lookup(t.Context(), key, 0)
	if got := collect(t, ch, time.Second); len(got) != 0 {
		t.Fatalf("closed node still found: %v", got)
	}
	if _, err := c.Lookup(t.Context(), "bad key", 1); err == nil {
		t.Fatal("invalid key accepted")
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := c.Advertise(ctx, []string{key}); err == nil {
		t.Fatal("Advertise with a cancelled context succeeded")
	}
}

func ExampleMemory() {
	ctx := context.Background()
	net := NewMemory()
	a := net.Node("node-a", netip.MustParseAddrPort("127.0.0.1:5000"))
	b := net.Node("node-b", netip.MustParseAddrPort("127.0.0.2:5000"))
	_ = a.Advertise(ctx, []string{"docker.io/library/nginx:1.27"})
	peers, _ := b.Lookup(ctx, "docker.io/library/nginx:1.27", 1)
	for p := range peers {
		fmt.Println(p.ID, p.URL())
	}
	// Output: node-a http://127.0.0.1:5000
}
