package routing

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
)

// TestP2P_Alone: a node is alone (ready with its own content) only when
// there is nobody to join: no bootstrap peers, or a headless Service that
// names only this node. A bootstrap name that fails or peers that exist
// but cannot be reached are not "alone": that node is cut off.
func TestP2P_Alone(t *testing.T) {
	t.Parallel()
	selfPort := sharedPort(t, "127.0.0.71")
	deadPort := sharedPort(t, "127.0.0.73")
	tests := []struct {
		name string
		ip   string
		cfg  P2PConfig
		want bool
	}{
		{"no bootstrap", "127.0.0.70", P2PConfig{}, true},
		{"dns names only this node", "127.0.0.71", P2PConfig{
			ListenAddr: fmt.Sprintf("127.0.0.71:%d", selfPort),
			Resolver:   fakeResolver{"self.test": {netip.MustParseAddr("127.0.0.71")}},
			Bootstrap:  []string{fmt.Sprintf("dns:self.test:%d", selfPort)},
		}, true},
		{"dns name unknown", "127.0.0.72", P2PConfig{
			Resolver: fakeResolver{}, Bootstrap: []string{"dns:missing.test:5001"},
		}, false},
		{"dns names a node that does not answer", "127.0.0.74", P2PConfig{
			Resolver:  fakeResolver{"dead.test": {netip.MustParseAddr("127.0.0.73")}},
			Bootstrap: []string{fmt.Sprintf("dns:dead.test:%d", deadPort)},
		}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.cfg.CheckInterval = time.Hour
			n := newTestNode(t, tc.ip, 5000, tc.cfg)
			got := cluster.WaitFor(t.Context(), 3*time.Second, n.Alone)
			if got != tc.want {
				t.Fatalf("Alone() = %v within 3 s, want %v", got, tc.want)
			}
			if ok, _ := n.Ready(t.Context()); ok {
				t.Fatal("Ready() with an empty routing table")
			}
		})
	}
}

// TestP2P_AloneEndsWhenAPeerJoins: the seed of a cluster is alone until the
// first peer joins; then it is ready because it has a peer, not alone.
func TestP2P_AloneEndsWhenAPeerJoins(t *testing.T) {
	t.Parallel()
	a := newTestNode(t, "127.0.0.75", 5000, P2PConfig{})
	if !cluster.WaitFor(t.Context(), 3*time.Second, a.Alone) {
		t.Fatal("a node without bootstrap is not alone")
	}
	b := newTestNode(t, "127.0.0.76", 5000, P2PConfig{Bootstrap: []string{bootstrapAddr(t, a)}, CheckInterval: 200 * time.Millisecond})
	waitReady(t, a, b)
	if a.Alone() || b.Alone() {
		t.Fatalf("Alone() after joining: a %v, b %v", a.Alone(), b.Alone())
	}
}
