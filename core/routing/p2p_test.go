package routing

import (
	"context"
	"crypto/rand"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	ipnet "github.com/libp2p/go-libp2p/core/pnet"
)

// newTestNode starts a P2P node listening on ip (a 127.0.0.x address) with
// a free port unless cfg.ListenAddr is set.
func newTestNode(t testing.TB, ip string, registryPort uint16, cfg P2PConfig) *P2P {
	t.Helper()
	if cfg.ListenAddr == "" {
		cfg.ListenAddr = ip + ":0"
	}
	cfg.RegistryPort = registryPort
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = time.Second
	}
	p, err := NewP2P(t.Context(), cfg)
	if err != nil {
		t.Fatalf("NewP2P(%s): %v", ip, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// bootstrapAddr returns n's first address with /p2p/ID.
func bootstrapAddr(t testing.TB, n *P2P) string {
	t.Helper()
	addrs := n.Addrs()
	if len(addrs) == 0 {
		t.Fatal("node has no address")
	}
	return addrs[0].String()
}

// waitReady polls until every node is ready, failing after 10 s.
func waitReady(t testing.TB, nodes ...*P2P) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for _, n := range nodes {
		for {
			ok, err := n.Ready(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %s not ready after 10s", n.ID())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func collect(t testing.TB, ch <-chan Peer, within time.Duration) []Peer {
	t.Helper()
	var out []Peer
	timeout := time.After(within)
	for {
		select {
		case p, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, p)
		case <-timeout:
			t.Fatalf("Lookup channel not closed within %v (got %v)", within, out)
		}
	}
}

// threeNodes starts nodes on 127.0.0.1/2/3 with registry ports 5101/2/3,
// B and C bootstrapping from A.
func threeNodes(t *testing.T, psk ipnet.PSK) (a, b, c *P2P) {
	t.Helper()
	a = newTestNode(t, "127.0.0.1", 5101, P2PConfig{PSK: psk})
	boot := []string{bootstrapAddr(t, a)}
	b = newTestNode(t, "127.0.0.2", 5102, P2PConfig{PSK: psk, Bootstrap: boot})
	c = newTestNode(t, "127.0.0.3", 5103, P2PConfig{PSK: psk, Bootstrap: boot})
	waitReady(t, a, b, c)
	return a, b, c
}

func TestP2P_LookupFindsProvider(t *testing.T) {
	t.Parallel()
	a, b, c := threeNodes(t, nil)
	key := "sha256:" + "ab12000000000000000000000000000000000000000000000000000000000000"
	if err := a.Advertise(t.Context(), []string{key}); err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ch, err := c.Lookup(ctx, key, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch, 6*time.Second)
	want := Peer{ID: a.ID().String(), Addr: netip.MustParseAddrPort("127.0.0.1:5101"), Scheme: "http"}
	if len(got) != 1 || got[0] != want {
		t.Fatalf("Lookup on C = %v, want [%v]", got, want)
	}
	if u := got[0].URL(); u != "http://127.0.0.1:5101" {
		t.Errorf("URL() = %q", u)
	}

	// B advertises too: a lookup without limit from C finds both, with
	// their own registry ports and IPs.
	if err := b.Advertise(t.Context(), []string{key}); err != nil {
		t.Fatalf("Advertise: %v", err)
	}
	ch, err = c.Lookup(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]netip.AddrPort{}
	for _, p := range collect(t, ch, 6*time.Second) {
		all[p.ID] = p.Addr
	}
	if all[a.ID().String()] != want.Addr || all[b.ID().String()] != netip.MustParseAddrPort("127.0.0.2:5102") || len(all) != 2 {
		t.Fatalf("Lookup(count 0) = %v", all)
	}

	// Lookup never returns self.
	ch, err = a.Lookup(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range collect(t, ch, 6*time.Second) {
		if p.ID == a.ID().String() {
			t.Fatalf("Lookup on A returned A itself: %v", p)
		}
	}
}

func TestP2P_LookupUnknownKeyIsFast(t *testing.T) {
	t.Parallel()
	_, _, c := threeNodes(t, nil)
	for i := range 5 {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		start := time.Now()
		ch, err := c.Lookup(ctx, TagKey("docker.io", "library/none", "v"+string(rune('0'+i))), 1)
		if err != nil {
			t.Fatal(err)
		}
		got := collect(t, ch, time.Second)
		took := time.Since(start)
		cancel()
		if len(got) != 0 {
			t.Fatalf("unknown key found %v", got)
		}
		// The lookup ends with its context (20 ms), not with a DHT walk
		// timeout (seconds); the slack is for a loaded 2-core machine.
		if took > time.Second {
			t.Fatalf("unknown key took %v, want about the 20ms deadline", took)
		}
	}
}

func TestP2P_InvalidKey(t *testing.T) {
	t.Parallel()
	a := newTestNode(t, "127.0.0.1", 5000, P2PConfig{})
	if _, err := a.Lookup(t.Context(), "nonsense", 1); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Lookup(nonsense) error = %v, want ErrInvalidKey", err)
	}
	if err := a.Advertise(t.Context(), []string{"sha256:zz"}); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf("Advertise(bad digest) error = %v, want ErrInvalidKey", err)
	}
	// Alone, the node is not ready and cannot advertise.
	if ok, _ := a.Ready(t.Context()); ok {
		t.Fatal("lone node is ready")
	}
	if err := a.Advertise(t.Context(), []string{"docker.io/library/x:1"}); !errors.Is(err, ErrNoPeers) {
		t.Fatalf("Advertise alone error = %v, want ErrNoPeers", err)
	}
}

func TestP2P_PSK(t *testing.T) {
	t.Parallel()
	psk := make(ipnet.PSK, 32)
	other := make(ipnet.PSK, 32)
	_, _ = rand.Read(psk)
	_, _ = rand.Read(other)
	a, _, _ := threeNodes(t, psk) // same PSK: joins

	for _, tc := range []struct {
		name string
		psk  ipnet.PSK
	}{{"other key", other}, {"no key", nil}} {
		t.Run(tc.name, func(t *testing.T) {
			x := newTestNode(t, "127.0.0.4", 5104, P2PConfig{PSK: tc.psk, Bootstrap: []string{bootstrapAddr(t, a)}})
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			if err := x.host.Connect(ctx, peer.AddrInfo{ID: a.ID(), Addrs: a.host.Addrs()}); err == nil {
				t.Fatal("connected to a node of another private network")
			}
			time.Sleep(300 * time.Millisecond) // let the bootstrap loop try
			if ok, _ := x.Ready(t.Context()); ok {
				t.Fatal("node with a wrong PSK became ready")
			}
			if _, err := discoverPeerID(ctx, firstAddrPort(t, a), tc.psk, x.key); err == nil {
				t.Fatal("peer ID discovered across private networks")
			}
		})
	}
}

func firstAddrPort(t testing.TB, n *P2P) netip.AddrPort {
	t.Helper()
	for _, a := range n.host.Addrs() {
		if ap, ok := maAddrPort(a); ok {
			return ap
		}
	}
	t.Fatal("no tcp address")
	return netip.AddrPort{}
}

func TestP2P_KeyPersisted(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first, err := NewP2P(t.Context(), P2PConfig{ListenAddr: "127.0.0.1:0", RegistryPort: 5000, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	id := first.ID()
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key file mode = %v, want 0600", st.Mode().Perm())
	}
	second := newTestNode(t, "127.0.0.1", 5000, P2PConfig{DataDir: dir})
	if second.ID() != id {
		t.Fatalf("peer ID after restart = %s, want %s", second.ID(), id)
	}
	third := newTestNode(t, "127.0.0.1", 5000, P2PConfig{DataDir: t.TempDir()})
	if third.ID() == id {
		t.Fatal("another data dir gave the same peer ID")
	}
}
