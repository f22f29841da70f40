package routing

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ipfs/go-cid"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/records"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/peer"
	ipnet "github.com/libp2p/go-libp2p/core/pnet"
	ma "github.com/multiformats/go-multiaddr"
	"golang.org/x/sync/errgroup"
)

// Defaults of P2PConfig.
const (
	DefaultRecordTTL     = 30 * time.Minute
	DefaultCheckInterval = 10 * time.Second
	// DHTProtocolPrefix keeps sluice's DHT apart from the public IPFS one.
	DHTProtocolPrefix = "/sluice"
)

// P2PConfig configures NewP2P.
type P2PConfig struct {
	// ListenAddr is --p2p-addr: ":5001", "127.0.0.2:5001", "[::1]:5001" or a
	// TCP multiaddr. Port 0 picks a free port.
	ListenAddr string
	// DataDir holds the node key (p2p.key, created 0600 when missing). Empty
	// gives an ephemeral key, hence a new peer ID on every start.
	DataDir string
	// RegistryPort and RegistryScheme ("http" by default, or "https") are
	// what peers are told about this node's registry (InfoProtocol).
	RegistryPort   uint16
	RegistryScheme string
	// RegistryIP is the IP --registry-addr binds to, when it names one
	// (not ":5000"): peers then reach the registry on it and on no other
	// of the node's addresses.
	RegistryIP netip.Addr
	// AnnounceAddrs are extra addresses (host:port or TCP multiaddrs)
	// announced beside the listen addresses, e.g. a NAT's public address.
	AnnounceAddrs []string
	// PSK, when set, makes the node join only the libp2p private network
	// of nodes holding the same key.
	PSK ipnet.PSK
	// Bootstrap are --bootstrap values (see ParseBootstrap).
	Bootstrap []string
	// Resolver resolves dns: bootstrap names; net.DefaultResolver if nil.
	Resolver Resolver
	// CheckInterval is how often the bootstrap loop checks that the routing
	// table is not empty (DefaultCheckInterval if 0).
	CheckInterval time.Duration
	// RecordTTL is how long this node keeps provider records it stores for
	// others (DefaultRecordTTL if 0). Every node must use the same value,
	// and the advertiser must re-provide more often than this.
	RecordTTL time.Duration
	// Logger receives the router's logs; silent if nil.
	Logger *slog.Logger
	// Host, when set, is used instead of starting a libp2p host (the
	// simulation runs nodes on mocknet this way): ListenAddr, DataDir,
	// AnnounceAddrs and PSK are then ignored, and Close closes Host.
	Host host.Host
	// DHTOptions are extra kad-dht options, applied after sluice's own
	// (e.g. dht.OnRequestHook to count RPCs in the simulation).
	DHTOptions []dht.Option
	// ReprovideInterval is how often the sweeping provider re-provides
	// every region of the keyspace (RecordTTL/3 if 0).
	ReprovideInterval time.Duration
	// OneByOne re-provides each key with its own Provide (a lookup plus
	// ~20 ADD_PROVIDER per key) every time Advertise is called, as before
	// the sweeping provider; kept to measure the difference.
	OneByOne bool
}

// P2P is the libp2p + Kademlia DHT router.
type P2P struct {
	host      host.Host
	dht       *dht.IpfsDHT
	info      *infoService
	key       crypto.PrivKey
	psk       ipnet.PSK
	resolver  Resolver
	bootstrap []Bootstrap
	log       *slog.Logger
	loopback  bool

	checkInterval time.Duration

	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	departed *departures // peers that said they left (LeaveProtocol)

	sweep *sweeper // nil with P2PConfig.OneByOne

	// alone: no bootstrap is configured, or the last bootstrap round found
	// no address but this node's own (a one-node cluster behind dns:).
	alone atomic.Bool
}

var (
	_ Router      = (*P2P)(nil)
	_ PeerCounter = (*P2P)(nil)
)

// NewP2P starts a libp2p host (TCP only; Noise; Ed25519 key from DataDir;
// no relay, NAT port mapping, mDNS or libp2p metrics) with a Kademlia DHT in
// server mode under the /sluice protocol prefix and no public bootstrap
// peers, and starts joining the Bootstrap peers in the background. ctx
// bounds only the start; Close stops the node.
//
// No address filter is installed: kad-dht v0.42 keeps loopback and private
// addresses by default (EmptyQueryFilter, EmptyRTFilter, no AddressFilter),
// which several nodes on one host (127.0.0.x) need.
func NewP2P(ctx context.Context, cfg P2PConfig) (*P2P, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if cfg.RegistryScheme == "" {
		cfg.RegistryScheme = "http"
	}
	self := NodeInfo{RegistryPort: cfg.RegistryPort, Scheme: cfg.RegistryScheme}
	if ip := cfg.RegistryIP.Unmap(); ip.IsValid() && !ip.IsUnspecified() {
		self.RegistryIP = ip.String()
	}
	if err := self.valid(); err != nil {
		return nil, fmt.Errorf("p2p config: %w", err)
	}
	bootstrap := make([]Bootstrap, 0, len(cfg.Bootstrap))
	for _, s := range cfg.Bootstrap {
		b, err := ParseBootstrap(s)
		if err != nil {
			return nil, err
		}
		bootstrap = append(bootstrap, b)
	}
	h, key, listen, err := cfg.newHost()
	if err != nil {
		return nil, err
	}
	ttl := cfg.RecordTTL
	if ttl <= 0 {
		ttl = DefaultRecordTTL
	}
	dopts := []dht.Option{
		dht.Mode(dht.ModeServer),
		dht.ProtocolPrefix(DHTProtocolPrefix),
		dht.ProviderManagerOpts(records.ProvideValidity(ttl)),
	}
	dopts = append(dopts, cfg.DHTOptions...)
	d, err := dht.New(h, dopts...)
	if err != nil {
		_ = h.Close()
		return nil, fmt.Errorf("start DHT: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var resolver Resolver = net.DefaultResolver
	if cfg.Resolver != nil {
		resolver = cfg.Resolver
	}
	check := cfg.CheckInterval
	if check <= 0 {
		check = DefaultCheckInterval
	}
	lip, _ := maIP(listen)
	p := &P2P{
		host: h, dht: d, key: key, psk: cfg.PSK, resolver: resolver,
		bootstrap: bootstrap, log: log, loopback: lip.IsLoopback(), checkInterval: check,
	}
	if !cfg.OneByOne {
		interval := cfg.ReprovideInterval
		if interval <= 0 {
			interval = ttl / 3
		}
		if interval*3/2 >= ttl { // a region is re-provided up to interval/2 late
			_ = d.Close()
			_ = h.Close()
			return nil, fmt.Errorf("p2p config: reprovide interval %v must be under two thirds of the record TTL %v", interval, ttl)
		}
		if p.sweep, err = newSweeper(d, interval); err != nil {
			_ = d.Close()
			_ = h.Close()
			return nil, err
		}
	}
	p.info = newInfoService(h, self)
	sub, err := h.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted))
	if err != nil {
		_ = p.sweep.close()
		_ = d.Close()
		_ = h.Close()
		return nil, fmt.Errorf("subscribe to identify events: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	if err := p.startLeave(runCtx, ttl); err != nil {
		cancel()
		sub.Close()
		_ = p.sweep.close()
		_ = d.Close()
		_ = h.Close()
		return nil, err
	}
	p.wg.Go(func() { p.prefetchInfo(runCtx, sub) })
	p.wg.Go(func() { p.runBootstrap(runCtx) })
	log.Info("p2p started", "peer", h.ID(), "addrs", h.Addrs())
	return p, nil
}

// prefetchInfo fetches the NodeInfo of every peer that identifies as a
// sluice node, so Lookup seldom waits for it. At most 8 fetches run at once;
// peers skipped here are fetched on demand.
func (p *P2P) prefetchInfo(ctx context.Context, sub event.Subscription) {
	defer sub.Close()
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub.Out():
			if !ok {
				return
			}
			evt, _ := e.(event.EvtPeerIdentificationCompleted)
			if !slices.Contains(evt.Protocols, InfoProtocol) {
				continue
			}
			select {
			case sem <- struct{}{}:
			default:
				continue
			}
			wg.Go(func() {
				defer func() { <-sem }()
				fctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				if _, err := p.info.fetch(fctx, evt.Peer); err != nil {
					p.log.Debug("fetch node info", "peer", evt.Peer, "error", err)
				}
			})
		}
	}
}

// Close stops the DHT and the host.
func (p *P2P) Close() error {
	var err error
	p.once.Do(func() {
		p.cancel()
		err = errors.Join(p.sweep.close(), p.dht.Close(), p.host.Close())
		p.wg.Wait()
	})
	return err
}

// ID returns this node's peer ID.
func (p *P2P) ID() peer.ID { return p.host.ID() }

// Addrs returns this node's libp2p addresses, each with /p2p/ID, as
// --bootstrap takes them.
func (p *P2P) Addrs() []ma.Multiaddr {
	addrs, err := peer.AddrInfoToP2pAddrs(&peer.AddrInfo{ID: p.host.ID(), Addrs: p.host.Addrs()})
	if err != nil {
		return nil
	}
	return addrs
}

// PeerCount returns the size of the DHT routing table.
func (p *P2P) PeerCount() int { return p.dht.RoutingTable().Size() }

// Alone reports whether this node has nobody to join: it has no bootstrap
// peers, or the last bootstrap round found no node but itself without an
// error (a one-node cluster whose headless Service names only this node).
// A node that is alone can serve its own content; readiness counts it ready.
func (p *P2P) Alone() bool { return p.alone.Load() && p.PeerCount() == 0 }

// Ready reports whether the routing table holds at least one peer.
func (p *P2P) Ready(ctx context.Context) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return p.PeerCount() > 0, nil
}

// provideConcurrency bounds the Provide calls Advertise runs at once.
const provideConcurrency = 8

// Advertise provides every key on the DHT: the record is stored locally and
// on the closest peers. With an empty routing table it fails at once with
// ErrNoPeers, so the caller retries; when only some keys fail the error is
// a *KeysError naming them.
func (p *P2P) Advertise(ctx context.Context, keys []string) error {
	cids, err := keyCIDs(keys)
	if err != nil {
		return err
	}
	if p.PeerCount() == 0 {
		return fmt.Errorf("advertise %d keys: %w", len(keys), ErrNoPeers)
	}
	if p.sweep != nil {
		return p.sweep.advertise(ctx, keys, cids, p.provideEach)
	}
	return p.provideEach(ctx, keys, cids)
}

// provideEach provides every key on its own: a lookup of the closest peers
// and an ADD_PROVIDER to each, per key.
func (p *P2P) provideEach(ctx context.Context, keys []string, cids []cid.Cid) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(provideConcurrency)
	var (
		mu     sync.Mutex
		failed []string
		errs   []error
	)
	for i, c := range cids {
		g.Go(func() error {
			if err := p.dht.Provide(gctx, c, true); err != nil {
				mu.Lock()
				failed = append(failed, keys[i])
				errs = append(errs, fmt.Errorf("advertise %s: %w", keys[i], err))
				mu.Unlock()
			}
			return nil
		})
	}
	_ = g.Wait()
	if len(failed) > 0 {
		return &KeysError{Keys: failed, Err: errors.Join(errs...)}
	}
	return nil
}

// Withdraw stops announcing keys. Kademlia has no un-provide, so there is
// nothing to send: the caller (the Advertiser) stops re-providing them and
// the records, here and on other nodes, expire after RecordTTL. Until then
// Lookup on other nodes may return this node, whose registry answers 404;
// the mirror then moves to the next peer.
func (p *P2P) Withdraw(ctx context.Context, keys []string) error {
	cids, err := keyCIDs(keys)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return p.sweep.withdraw(ctx, cids)
}

func keyCIDs(keys []string) ([]cid.Cid, error) {
	out := make([]cid.Cid, len(keys))
	for i, k := range keys {
		c, err := KeyCID(k)
		if err != nil {
			return nil, err
		}
		out[i] = c
	}
	return out, nil
}
