package mirror

import (
	"bytes"
	"context"
	"encoding"
	"hash"
	"io"
	"net/http"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
)

// segment is the part [start, end) of a blob that one peer sent.
type segment struct {
	peer       routing.Peer
	start, end int64
}

// hashState snapshots a running hash (nil when the hash cannot say).
// Two hashes fed the same bytes have the same state; a different prefix
// gives a different state, short of a hash collision.
func hashState(h hash.Hash) []byte {
	m, ok := h.(encoding.BinaryMarshaler)
	if !ok {
		return nil
	}
	b, err := m.MarshalBinary()
	if err != nil {
		return nil
	}
	return b
}

// blame quarantines the peer whose bytes are proven wrong after a blob
// from segs (one or more peers, in blob order) failed its digest; marks
// hold the hash state at the end of each segment. Peers are only
// quarantined on proof:
//   - a blob that came from one peer alone proves that peer wrong;
//   - otherwise a verified copy is fetched in the background (from the
//     peers used, then the others found); the first segment whose end
//     state differs from the copy's at the same offset, after a start
//     that matched, holds the wrong bytes, and its peer is quarantined.
//     A candidate whose own full copy fails the digest is proven wrong
//     too. With no verified copy, nobody is quarantined.
func (m *Mirror) blame(ctx context.Context, ref oci.Reference, path string, size int64, segs []segment, marks [][]byte, others []routing.Peer) {
	var cands []routing.Peer
	seen := map[string]bool{}
	for _, sg := range segs {
		if sg.end > sg.start && !seen[sg.peer.ID] {
			seen[sg.peer.ID] = true
			cands = append(cands, sg.peer)
		}
	}
	if len(cands) == 1 {
		m.badBytes(cands[0], ref.Digest.String())
		return
	}
	if len(cands) == 0 || len(marks) != len(segs) || segs[len(segs)-1].end != size {
		return
	}
	for _, p := range others {
		if !seen[p.ID] {
			seen[p.ID] = true
			cands = append(cands, p)
		}
	}
	// The request is over (its client saw an aborted body); the proof
	// runs on its own, bounded by the transfer budget.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), registry.TransferBudget(size))
	go func() {
		defer cancel()
		m.settle(ctx, ref, path, size, segs, marks, cands)
	}()
}

// settle fetches a verified copy from the first candidate that has one
// and quarantines the peers it proves wrong.
func (m *Mirror) settle(ctx context.Context, ref oci.Reference, path string, size int64, segs []segment, marks [][]byte, cands []routing.Peer) {
	select {
	case m.sem <- struct{}{}:
		defer func() { <-m.sem }()
	case <-ctx.Done():
		return
	}
	proven := map[string]bool{}
	convict := func(p routing.Peer) {
		if !proven[p.ID] {
			proven[p.ID] = true
			m.badBytes(p, ref.Digest.String())
		}
	}
	for _, p := range cands {
		if m.quarantine.has(p.ID) {
			continue
		}
		states, ok, err := m.copyStates(ctx, p, path, ref.Digest, size, segs)
		if err != nil {
			m.log.Debug("no verified copy from peer", "peer", p.ID, "digest", ref.Digest, "err", err)
			continue
		}
		if !ok {
			convict(p) // its own whole blob fails the digest
			continue
		}
		for i, sg := range segs {
			if states[i] == nil || marks[i] == nil {
				break // the hash cannot be snapshotted: no proof
			}
			if !bytes.Equal(states[i], marks[i]) {
				convict(sg.peer)
				return
			}
		}
		return
	}
	m.log.Warn("blob from several peers failed its digest and no verified copy was found; no peer quarantined", "digest", ref.Digest)
}

// copyStates reads the whole blob from p, hashing it, and returns the
// hash state at the end of each segment and whether the blob matched d.
func (m *Mirror) copyStates(ctx context.Context, p routing.Peer, path string, d digest.Digest, size int64, segs []segment) ([][]byte, bool, error) {
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resp, err := m.do(rctx, p, http.MethodGet, path, 0)
	if err != nil {
		return nil, false, err
	}
	body := newWatchdog(resp.Body, cancel, m.idleTimeout)
	defer body.Close()
	if resp.ContentLength != size {
		return nil, false, errBadPeer
	}
	h := d.Algorithm().Hash()
	states := make([][]byte, 0, len(segs))
	var off int64
	for _, sg := range segs {
		if _, err := io.CopyN(h, body, sg.end-off); err != nil {
			return nil, false, err
		}
		off = sg.end
		states = append(states, hashState(h))
	}
	return states, digest.NewDigest(d.Algorithm(), h) == d, nil
}
