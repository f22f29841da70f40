package routing

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	pb "github.com/libp2p/go-libp2p-kad-dht/pb"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	corerouting "github.com/libp2p/go-libp2p/core/routing"
	mocknet "github.com/libp2p/go-libp2p/p2p/net/mock"
)

// The DHT simulation: n sluice P2P routers (the real NewP2P, kad-dht,
// sweeping provider, InfoProtocol, Lookup) on libp2p's in-memory network.
// Every DHT request a node receives is counted by its sender and type
// (dht.OnRequestHook), and the nodes that store a provider record for a
// key are remembered, so a lookup's messages and hops can be told.

// simNet is a simulated cluster.
type simNet struct {
	mn    mocknet.Mocknet
	nodes []*P2P
	index map[peer.ID]int
	dead  []bool

	sent [][pb.Message_PING + 1]atomic.Int64 // by sender index, by message type

	mu      sync.Mutex
	holders map[string]map[peer.ID]bool // multihash → nodes holding a record
}

// simConfig tweaks one node's P2PConfig (i is its index).
type simConfig func(i int, cfg *P2PConfig)

// newSimNet starts n nodes, links them all and fills their routing tables:
// each connects to a few random nodes and refreshes its table, as a node
// bootstrapping from a Service's endpoints does.
func newSimNet(tb testing.TB, n int, tweak simConfig) *simNet {
	tb.Helper()
	s := &simNet{
		mn: mocknet.New(), index: map[peer.ID]int{}, dead: make([]bool, n),
		sent: make([][pb.Message_PING + 1]atomic.Int64, n), holders: map[string]map[peer.ID]bool{},
	}
	tb.Cleanup(func() { _ = s.mn.Close() })
	for i := range n {
		h, err := s.mn.GenPeer()
		if err != nil {
			tb.Fatalf("gen peer: %v", err)
		}
		s.index[h.ID()] = i
	}
	if err := s.mn.LinkAll(); err != nil {
		tb.Fatalf("link: %v", err)
	}
	ctx := tb.Context()
	for i, id := range s.mn.Peers() {
		h := s.mn.Host(id)
		i = s.index[id]
		self := h.ID()
		cfg := P2PConfig{
			Host: h, RegistryPort: 5000,
			DHTOptions: []dht.Option{dht.OnRequestHook(func(_ context.Context, st network.Stream, req *pb.Message) {
				s.count(self, st.Conn().RemotePeer(), req)
			})},
		}
		if tweak != nil {
			tweak(i, &cfg)
		}
		p, err := NewP2P(ctx, cfg)
		if err != nil {
			tb.Fatalf("node %d: %v", i, err)
		}
		tb.Cleanup(func() { _ = p.Close() })
		if s.nodes == nil {
			s.nodes = make([]*P2P, n)
		}
		s.nodes[i] = p
	}
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	for i := range n {
		for range 8 {
			j := rng.IntN(n)
			if j != i {
				if _, err := s.mn.ConnectPeers(s.nodes[i].ID(), s.nodes[j].ID()); err != nil {
					tb.Fatalf("connect: %v", err)
				}
			}
		}
	}
	start := time.Now()
	// Identify runs before a connected peer enters the routing table.
	deadline := time.Now().Add(2 * time.Minute)
	for _, p := range s.nodes {
		for p.PeerCount() < 3 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	// One refresh per node, many at once: a refresh mostly waits.
	for range 1 {
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, p := range s.nodes {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				select {
				case <-p.dht.RefreshRoutingTable():
				case <-ctx.Done():
				}
			})
		}
		wg.Wait()
	}
	tb.Logf("sim: %d nodes up, routing tables filled in %v", n, time.Since(start).Round(time.Millisecond))
	return s
}

func (s *simNet) count(self, from peer.ID, req *pb.Message) {
	if i, ok := s.index[from]; ok && int(req.GetType()) < len(s.sent[i]) {
		s.sent[i][req.GetType()].Add(1)
	}
	if req.GetType() == pb.Message_ADD_PROVIDER {
		s.mu.Lock()
		k := string(req.GetKey())
		if s.holders[k] == nil {
			s.holders[k] = map[peer.ID]bool{}
		}
		s.holders[k][self] = true
		s.mu.Unlock()
	}
}

// addHolder records that node i holds its own record for key (a provider
// answers GET_PROVIDERS from its local store).
func (s *simNet) addHolder(i int, key string) {
	c, _ := KeyCID(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	k := string(c.Hash())
	if s.holders[k] == nil {
		s.holders[k] = map[peer.ID]bool{}
	}
	s.holders[k][s.nodes[i].ID()] = true
}

// sentBy returns how many DHT requests node i has sent, of the given types
// (all types when none is given).
func (s *simNet) sentBy(i int, types ...pb.Message_MessageType) int64 {
	var n int64
	for t := range s.sent[i] {
		if len(types) == 0 || slices.Contains(types, pb.Message_MessageType(t)) {
			n += s.sent[i][t].Load()
		}
	}
	return n
}

// kill stops a tenth (or frac) of the nodes, never node 0..keep-1, without
// any goodbye: their host goes away, the records they stored and the
// records naming them stay on the others.
func (s *simNet) kill(tb testing.TB, frac float64, keep int) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(2, uint64(len(s.nodes))))
	want := int(float64(len(s.nodes)) * frac)
	for killed := 0; killed < want; {
		i := keep + rng.IntN(len(s.nodes)-keep)
		if s.dead[i] {
			continue
		}
		s.dead[i] = true
		killed++
		// The node vanishes: no link, no connection, nothing answers.
		id := s.nodes[i].ID()
		for _, other := range s.mn.Peers() {
			if other != id {
				_ = s.mn.UnlinkPeers(id, other)
				_ = s.mn.DisconnectPeers(id, other)
			}
		}
		_ = s.nodes[i].Close()
	}
}

// live returns a random live node index, not in avoid.
func (s *simNet) live(rng *rand.Rand, avoid ...int) int {
	for {
		i := rng.IntN(len(s.nodes))
		if !s.dead[i] && !slices.Contains(avoid, i) {
			return i
		}
	}
}

// lookupResult is one measured lookup.
type lookupResult struct {
	found bool
	first time.Duration // to the first provider (or to the end, when none)
	msgs  int64         // DHT requests the looking-up node sent
	hops  int           // depth in the query tree of the first record holder reached
}

// lookup runs Lookup(key, 1) on node from within budget and measures it.
// Lookups must not overlap (messages are counted per sender).
func (s *simNet) lookup(ctx context.Context, from int, key string, budget time.Duration) lookupResult {
	c, _ := KeyCID(key)
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	ectx, events := corerouting.RegisterForQueryEvents(ctx)
	depth := map[peer.ID]int{}
	queried := map[peer.ID]bool{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range events {
			switch e.Type {
			case corerouting.SendingQuery:
				if _, ok := depth[e.ID]; !ok {
					depth[e.ID] = 1
				}
				queried[e.ID] = true
			case corerouting.PeerResponse:
				d, ok := depth[e.ID]
				if !ok {
					d = 1
				}
				for _, r := range e.Responses {
					if old, ok := depth[r.ID]; !ok || d+1 < old {
						depth[r.ID] = d + 1
					}
				}
			}
		}
	}()
	before := s.sentBy(from)
	start := time.Now()
	var res lookupResult
	ch, err := s.nodes[from].Lookup(ectx, key, 1)
	if err == nil {
		for range ch {
			if !res.found {
				res.found = true
				res.first = time.Since(start)
				res.msgs = s.sentBy(from) - before
			}
		}
	}
	if !res.found {
		res.first = time.Since(start)
		res.msgs = s.sentBy(from) - before
	}
	cancel()
	<-done
	s.mu.Lock()
	holders := s.holders[string(c.Hash())]
	s.mu.Unlock()
	res.hops = -1
	if holders[s.nodes[from].ID()] {
		res.hops = 0
	}
	for id := range queried {
		if holders[id] && (res.hops < 0 || depth[id] < res.hops) {
			res.hops = depth[id]
		}
	}
	if res.hops < 0 { // the record came from a node that provides it itself
		for id := range queried {
			res.hops = max(res.hops, depth[id])
		}
	}
	return res
}

// simKey is the digest key of the i-th simulated blob.
func simKey(i int) string {
	return fmt.Sprintf("sha256:%064x", i+1)
}
