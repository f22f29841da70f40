package mirror

import (
	"context"
	"errors"
	"time"

	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
)

// WithCoalesce turns on coalesced first pulls (issue 11): content no peer
// holds is asked, with oci.CoalesceHeader, of the node responsible for its
// key (routing.Responsibler), which fetches it from the upstream once for
// every requester. self is this node's registry as peers reach it, asked
// when this node is the responsible one. Without it (or with a router that
// cannot name a responsible node) nothing found means 404, as before.
func WithCoalesce(self routing.Peer) Option {
	return func(m *Mirror) { m.coalesceSelf = &self }
}

// responsibleTimeout bounds naming the responsible node (a routing table
// read, or a DHT lookup in clusters past a k-bucket).
const responsibleTimeout = time.Second

// find looks the key's providers up; when there are none and coalescing
// is on, the peer set is the responsible node alone, asked with the
// coalesce header. Its answer is verified like any peer's, and a transfer
// it fails mid-blob resumes on providers found by a fresh lookup (the
// nodes that completed, or that it announced to) or aborts.
func (m *Mirror) find(ctx context.Context, key string) (*peerSet, error) {
	ps, err := m.lookup(ctx, key)
	if m.coalesceSelf == nil || !errors.Is(err, store.ErrNotFound) {
		return ps, err
	}
	r, ok := m.router.(routing.Responsibler)
	if !ok {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, responsibleTimeout)
	p, self, rerr := r.Responsible(rctx, key)
	cancel()
	if rerr != nil {
		m.log.Debug("no responsible node", "key", key, "err", rerr)
		return nil, err
	}
	if self {
		p = *m.coalesceSelf
		if p.ID == "" {
			p.ID = m.self
		}
	}
	if m.quarantine.has(p.ID) {
		return nil, err
	}
	m.log.Debug("no provider; asking the responsible node", "key", key, "peer", p.ID, "self", self)
	return &peerSet{key: key, m: m, q: m.quarantine, notify: make(chan struct{}), coalesce: p.ID,
		queue: []routing.Peer{p}, seen: map[string]bool{p.ID: true}, failed: map[string]bool{}}, nil
}
