package routing

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// fakeResolver maps names to addresses, and counts lookups.
type fakeResolver map[string][]netip.Addr

func (r fakeResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func TestParseBootstrap(t *testing.T) {
	t.Parallel()
	const id = "12D3KooWGRUVh9QY5ZnE8S2TTSrMNqCVKN6tbZnRkKmgAcHi6bRy"
	tests := []struct {
		in      string
		want    string
		wantErr bool
	}{
		{in: "/ip4/10.0.0.7/tcp/5001/p2p/" + id, want: "{" + id + ": [/ip4/10.0.0.7/tcp/5001]}"},
		{in: "dns:sluice.kube-system.svc:5001", want: "dns:sluice.kube-system.svc:5001"},
		{in: "dns:sluice:0", wantErr: true},
		{in: "dns:sluice", wantErr: true},
		{in: "dns::5001", wantErr: true},
		{in: "/ip4/10.0.0.7/tcp/5001", wantErr: true}, // no peer ID
		{in: "10.0.0.7:5001", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			b, err := ParseBootstrap(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("ParseBootstrap(%q) error = %v, wantErr %v", tc.in, err, tc.wantErr)
			}
			if err == nil && b.String() != tc.want {
				t.Fatalf("ParseBootstrap(%q) = %s, want %s", tc.in, b, tc.want)
			}
		})
	}
}

func TestParseListenAddr(t *testing.T) {
	t.Parallel()
	tests := []struct{ in, want string }{
		{":5001", "/ip4/0.0.0.0/tcp/5001"},
		{"127.0.0.2:5001", "/ip4/127.0.0.2/tcp/5001"},
		{"[::1]:5001", "/ip6/::1/tcp/5001"},
		{"/ip4/127.0.0.3/tcp/0", "/ip4/127.0.0.3/tcp/0"},
		{"127.0.0.1", ""},
		{"127.0.0.1:99999", ""},
		{"host:5001", ""},
		{"::1:5001", ""},
	}
	for _, tc := range tests {
		m, err := ParseListenAddr(tc.in)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ParseListenAddr(%q) = %v, want error", tc.in, m)
			}
			continue
		}
		if err != nil || m.String() != tc.want {
			t.Errorf("ParseListenAddr(%q) = %v, %v; want %s", tc.in, m, err, tc.want)
		}
	}
}

// sharedPort returns a TCP port free on every ip (DNS bootstrap uses one
// port for all the records of a name).
func sharedPort(t *testing.T, ips ...string) uint16 {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", ips[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ls := []net.Listener{l}
		ok := true
		for _, ip := range ips[1:] {
			l2, err := net.Listen("tcp", ip+":"+strconv.Itoa(port))
			if err != nil {
				ok = false
				break
			}
			ls = append(ls, l2)
		}
		for _, l := range ls {
			_ = l.Close()
		}
		if ok {
			return uint16(port)
		}
	}
	t.Fatal("no port free on every address")
	return 0
}

func TestP2P_DNSBootstrap(t *testing.T) {
	t.Parallel()
	port := sharedPort(t, "127.0.0.1", "127.0.0.2")
	res := fakeResolver{"sluice.test": {
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"),
	}}
	boot := []string{fmt.Sprintf("dns:sluice.test:%d", port)}
	// A's own record is in the answer: it must skip itself and join B.
	a := newTestNode(t, "127.0.0.1", 5201, P2PConfig{
		ListenAddr: fmt.Sprintf("127.0.0.1:%d", port), Bootstrap: boot, Resolver: res})
	b := newTestNode(t, "127.0.0.2", 5202, P2PConfig{ListenAddr: fmt.Sprintf("127.0.0.2:%d", port)})
	c := newTestNode(t, "127.0.0.3", 5203, P2PConfig{Bootstrap: boot, Resolver: res})
	waitReady(t, a, b, c)

	// C learned both peer IDs without being told them.
	peers, err := c.bootstrapPeers(t.Context())
	if err != nil {
		t.Fatalf("bootstrapPeers: %v", err)
	}
	ids := map[string]bool{}
	for _, p := range peers {
		ids[p.ID.String()] = true
	}
	if len(ids) != 2 || !ids[a.ID().String()] || !ids[b.ID().String()] {
		t.Fatalf("bootstrap peers = %v, want A and B", peers)
	}

	key := TagKey("docker.io", "library/nginx", "1.27")
	if err := b.Advertise(t.Context(), []string{key}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	ch, err := c.Lookup(ctx, key, 1)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, ch, 6*time.Second)
	if len(got) != 1 || got[0].ID != b.ID().String() || got[0].Addr != netip.MustParseAddrPort("127.0.0.2:5202") {
		t.Fatalf("Lookup = %v, want B at 127.0.0.2:5202", got)
	}
}

func TestP2P_DNSBootstrapUnknownName(t *testing.T) {
	t.Parallel()
	n := newTestNode(t, "127.0.0.1", 5000, P2PConfig{Bootstrap: []string{"dns:missing.test:5001"}, Resolver: fakeResolver{}})
	_, err := n.bootstrapPeers(t.Context())
	var dnsErr *net.DNSError
	if !errors.As(err, &dnsErr) {
		t.Fatalf("bootstrapPeers error = %v, want a DNS error", err)
	}
	if ok, _ := n.Ready(t.Context()); ok {
		t.Fatal("ready without peers")
	}
}

func TestDiscoverPeerID(t *testing.T) {
	t.Parallel()
	a := newTestNode(t, "127.0.0.1", 5000, P2PConfig{})
	key, _, err := crypto.GenerateEd25519Key(nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	id, err := discoverPeerID(ctx, firstAddrPort(t, a), nil, key)
	if err != nil {
		t.Fatal(err)
	}
	if id != a.ID() {
		t.Fatalf("discovered %s, want %s", id, a.ID())
	}
	// Nothing listening: an error, not a hang.
	closed := netip.MustParseAddrPort("127.0.0.1:1")
	if _, err := discoverPeerID(ctx, closed, nil, key); err == nil {
		t.Fatal("discovered a peer ID where nothing listens")
	}
}
