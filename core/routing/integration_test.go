package routing

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"

	"github.com/sluice-oci/sluice/core/store/memory"
)

// TestP2P_BootstrapRetries starts B before its bootstrap peer A exists: B
// is not ready, keeps retrying, and joins once A starts.
func TestP2P_BootstrapRetries(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	key, err := LoadOrCreateKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := peer.IDFromPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	port := sharedPort(t, "127.0.0.1")
	b := newTestNode(t, "127.0.0.2", 5302, P2PConfig{
		Bootstrap:     []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d/p2p/%s", port, id)},
		CheckInterval: 500 * time.Millisecond,
	})
	time.Sleep(300 * time.Millisecond)
	if ok, _ := b.Ready(t.Context()); ok {
		t.Fatal("ready before any peer exists")
	}
	a := newTestNode(t, "127.0.0.1", 5301, P2PConfig{ListenAddr: fmt.Sprintf("127.0.0.1:%d", port), DataDir: dir})
	if a.ID() != id {
		t.Fatalf("A's ID %s, want the one in its data dir %s", a.ID(), id)
	}
	waitReady(t, a, b)
}

// TestAdvertiser_P2P runs the advertiser on a real node: an image stored
// on A is found by tag and by layer digest from C.
func TestAdvertiser_P2P(t *testing.T) {
	t.Parallel()
	a, _, c := threeNodes(t, nil)
	s := memory.New()
	img := addImage(t, s, "docker.io/library/nginx:1.27", `{"c":9}`, "nginx-layer", true)
	adv := NewAdvertiser(a, s, WithDebounce(10*time.Millisecond))
	startAdvertiser(t, adv)
	tag := TagKey("docker.io", "library/nginx", "1.27")
	eventually(t, "advertised on A", func() bool { return hasAll(adv.Advertised(), append(img.digestKeys(), tag)...) })
	for _, key := range []string{tag, img.layer.Digest.String()} {
		// Found at all, from a node that never held it: how fast is the
		// DHT simulation's and the benchmarks' business (a 20 ms budget
		// here failed under make test's -race load).
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		ch, err := c.Lookup(ctx, key, 1)
		if err != nil {
			t.Fatal(err)
		}
		got := collect(t, ch, time.Second)
		cancel()
		want := Peer{ID: a.ID().String(), Addr: netip.MustParseAddrPort("127.0.0.1:5101"), Scheme: "http"}
		if !slices.Equal(got, []Peer{want}) {
			t.Fatalf("Lookup(%s) = %v, want [%v]", key, got, want)
		}
	}
}
