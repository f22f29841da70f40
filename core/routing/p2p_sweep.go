package routing

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ipfs/go-cid"
	"github.com/ipfs/go-datastore"
	dssync "github.com/ipfs/go-datastore/sync"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p-kad-dht/provider"
	"github.com/libp2p/go-libp2p-kad-dht/provider/keystore"
	mh "github.com/multiformats/go-multihash"
)

// syncProvideMax is the largest batch of new keys Advertise provides one
// by one before returning, so a key that just arrived (an image event) is
// on the DHT when Advertise returns and a failure is reported for a retry.
// Larger batches (a node starting with its whole store) go to the sweeping
// provider, which provides them region by region in the background.
const syncProvideMax = 64

// sweeper re-provides a node's keys with kad-dht's SweepingProvider: the
// keyspace is cut into regions (prefixes) each held by about 20 peers, and
// every interval each region is re-provided with one walk to its peers and
// one ADD_PROVIDER batch per peer, instead of a lookup plus ~20
// ADD_PROVIDER per key. Regions are spread over the interval.
type sweeper struct {
	ks keystore.Keystore
	sp *provider.SweepingProvider
}

func newSweeper(d *dht.IpfsDHT, interval time.Duration) (*sweeper, error) {
	ks, err := keystore.NewKeystore(dssync.MutexWrap(datastore.NewMapDatastore()))
	if err != nil {
		return nil, fmt.Errorf("start provider keystore: %w", err)
	}
	sp, err := provider.New(
		provider.WithHost(d.Host()),
		provider.WithReplicationFactor(d.BucketSize()),
		provider.WithSelfAddrs(d.FilteredAddrs),
		provider.WithRouter(d),
		provider.WithMessageSender(d.MessageSender()),
		provider.WithKeystore(ks),
		provider.WithAddLocalRecord(func(ctx context.Context, h mh.Multihash) error {
			return d.Provide(ctx, cid.NewCidV1(cid.Raw, h), false)
		}),
		provider.WithReprovideInterval(interval),
		// A region is re-provided at most interval+interval/2 after the
		// last time: within RecordTTL (= 3 intervals by default).
		provider.WithMaxReprovideDelay(interval/2),
	)
	if err != nil {
		_ = ks.Close()
		return nil, fmt.Errorf("start sweeping provider: %w", err)
	}
	return &sweeper{ks: ks, sp: sp}, nil
}

// advertise adds keys to the set the sweeper re-provides. Keys already in
// it cost nothing (the sweep re-provides them on its schedule). New keys
// are provided at once: a few one by one with provideEach (failures are
// returned as a *KeysError and forgotten, so the caller retries them), many
// in region batches by the sweeping provider.
func (s *sweeper) advertise(ctx context.Context, keys []string, cids []cid.Cid,
	provideEach func(context.Context, []string, []cid.Cid) error,
) error {
	byHash := make(map[string]int, len(cids))
	hashes := make([]mh.Multihash, len(cids))
	for i, c := range cids {
		hashes[i] = c.Hash()
		byHash[string(c.Hash())] = i
	}
	added, err := s.ks.Put(ctx, hashes...)
	if err != nil {
		return fmt.Errorf("advertise %d keys: %w", len(keys), err)
	}
	if len(added) == 0 {
		return nil
	}
	if len(added) > syncProvideMax {
		if err := s.sp.StartProviding(true, added...); err != nil {
			return errors.Join(fmt.Errorf("advertise %d keys: %w", len(added), err), s.ks.Delete(ctx, added...))
		}
		return nil
	}
	nk := make([]string, len(added))
	nc := make([]cid.Cid, len(added))
	for j, h := range added {
		i := byHash[string(h)]
		nk[j], nc[j] = keys[i], cids[i]
	}
	err = provideEach(ctx, nk, nc)
	ok := added
	if err != nil {
		failed := map[string]bool{}
		var ke *KeysError
		if errors.As(err, &ke) {
			for _, k := range ke.Keys {
				failed[k] = true
			}
		} else {
			for _, k := range nk {
				failed[k] = true
			}
		}
		ok = ok[:0:0]
		var drop []mh.Multihash
		for j, h := range added {
			if failed[nk[j]] {
				drop = append(drop, h)
			} else {
				ok = append(ok, h)
			}
		}
		if derr := s.ks.Delete(ctx, drop...); derr != nil {
			err = errors.Join(err, derr)
		}
	}
	if len(ok) > 0 {
		if serr := s.sp.AddToSchedule(ok...); serr != nil {
			err = errors.Join(err, fmt.Errorf("schedule re-provide: %w", serr))
		}
	}
	return err
}

// withdraw stops re-providing keys. A nil sweeper has nothing to stop.
func (s *sweeper) withdraw(_ context.Context, cids []cid.Cid) error {
	if s == nil || len(cids) == 0 {
		return nil
	}
	hashes := make([]mh.Multihash, len(cids))
	for i, c := range cids {
		hashes[i] = c.Hash()
	}
	if err := s.sp.StopProviding(hashes...); err != nil {
		return fmt.Errorf("withdraw %d keys: %w", len(cids), err)
	}
	return nil
}

// close stops the sweeping provider. A nil sweeper is a no-op.
func (s *sweeper) close() error {
	if s == nil {
		return nil
	}
	return errors.Join(s.sp.Close(), s.ks.Close())
}
