package routing

import (
	"testing"
	"time"

	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
)

// TestP2P_AdvertiseSweep: with the sweeping provider, Advertise provides
// new keys at once (a small batch before it returns, a large one in region
// batches soon after), costs nothing for keys it already re-provides (the
// advertiser's refresh), and provides a withdrawn key again when it is
// advertised again.
func TestP2P_AdvertiseSweep(t *testing.T) {
	s := newSimNet(t, 12, nil)
	ctx := t.Context()
	adds := func() int64 { return s.sentBy(0, pb.Message_ADD_PROVIDER) }
	small := []string{simKey(1), simKey(2), simKey(3)}
	large := make([]string, syncProvideMax+10)
	for i := range large {
		large[i] = simKey(100 + i)
	}
	waitAdds := func(from int64, want int64) int64 {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for adds()-from < want && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		return adds() - from
	}
	// settle waits until no ADD_PROVIDER has arrived for 300 ms: messages
	// are counted where they arrive, after Advertise returned.
	settle := func() {
		for last := int64(-1); adds() != last; {
			last = adds()
			time.Sleep(300 * time.Millisecond)
		}
	}
	steps := []struct {
		name     string
		do       func() error
		wantSome int64 // at least this many ADD_PROVIDER (0: exactly none)
	}{
		{"small batch, new", func() error { return s.nodes[0].Advertise(ctx, small) }, int64(len(small))},
		{"small batch, known", func() error { return s.nodes[0].Advertise(ctx, small) }, 0},
		{"large batch, new", func() error { return s.nodes[0].Advertise(ctx, large) }, int64(len(large))},
		{"withdrawn", func() error { return s.nodes[0].Withdraw(ctx, small[:1]) }, 0},
		{"advertised again", func() error { return s.nodes[0].Advertise(ctx, small) }, 1},
	}
	for _, st := range steps {
		settle()
		before := adds()
		if err := st.do(); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if st.wantSome == 0 {
			settle()
			if got := adds() - before; got != 0 {
				t.Errorf("%s: %d ADD_PROVIDER sent, want none", st.name, got)
			}
			continue
		}
		if got := waitAdds(before, st.wantSome); got < st.wantSome {
			t.Errorf("%s: %d ADD_PROVIDER sent, want at least %d", st.name, got, st.wantSome)
		}
	}
}
