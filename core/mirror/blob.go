package mirror

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
)

// ServeBlob implements registry.Mirror. The whole blob is always read from
// peers and hashed, even for a Range request, so every byte is checked
// against the digest; only the requested window is written, chunk by
// chunk as it is hashed. The chunk that ends the window is held back until
// the digest matched: a mismatch aborts the response before the client
// ever sees a complete body.
func (m *Mirror) ServeBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, ref oci.Reference) error {
	// Every fetch slot busy: 404 at once, so containerd goes to the next
	// host now rather than queueing behind transfers until its own
	// timeout.
	select {
	case m.sem <- struct{}{}:
		defer func() { <-m.sem }()
	default:
		m.metrics.PeerFetchRejected.Inc()
		return fmt.Errorf("all %d peer fetch slots busy: %w", cap(m.sem), store.ErrNotFound)
	}
	m.metrics.PeerFetchesInFlight.Inc()
	defer m.metrics.PeerFetchesInFlight.Dec()

	peers, err := m.find(ctx, ref.Digest.String())
	if err != nil {
		return err
	}
	if !ref.Digest.Algorithm().Available() {
		return fmt.Errorf("digest %s: %w", ref.Digest, store.ErrNotFound)
	}
	path := fmt.Sprintf("/v2/%s/blobs/%s?ns=%s", ref.Repository, ref.Digest, ref.Registry)
	method := http.MethodGet
	if r.Method == http.MethodHead {
		method = http.MethodHead
	}
	resp, p, err := m.first(ctx, peers, method, path, 0, false)
	if err != nil {
		return err
	}
	registry.NoteFetched(ctx, p.ID, 0)
	size := resp.ContentLength
	if size < 0 {
		resp.Body.Close()
		return fmt.Errorf("%w: peer %s sent no Content-Length", errBadPeer, p.ID)
	}
	s := &stream{m: m, ctx: ctx, w: w, peers: peers, path: path, size: size, h: ref.Digest.Algorithm().Hash(), ref: ref}
	rng, partial, err := oci.ParseRange(r.Header.Get("Range"), size)
	if err != nil {
		resp.Body.Close()
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		oci.WriteError(w, r, err)
		return nil
	}
	if !partial {
		rng = oci.ByteRange{Start: 0, Length: size}
	}
	h := w.Header()
	h.Set("Content-Type", oci.MediaTypeOctetStream)
	h.Set("Docker-Content-Digest", ref.Digest.String())
	h.Set("Etag", `"`+ref.Digest.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(rng.Length, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", rng.ContentRange(size))
		status = http.StatusPartialContent
	}
	if method == http.MethodHead {
		resp.Body.Close()
		w.WriteHeader(status)
		return nil
	}
	// The whole transfer, peers to client, gets a budget scaled by size.
	ctx, cancel := context.WithTimeout(ctx, registry.TransferBudget(size))
	defer cancel()
	s.ctx = ctx
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(registry.TransferBudget(size)))
	w.WriteHeader(status)
	s.winStart, s.winEnd = rng.Start, rng.Start+rng.Length
	if m.multiPeer(s) { // several providers: ranges from each (multipeer.go)
		return m.fetchRanges(s, resp, p)
	}
	m.metrics.PeerTransfers.WithLabelValues("single").Inc()
	return s.run(resp, p)
}

// stream copies one blob from peers to the client.
type stream struct {
	m     *Mirror
	ctx   context.Context
	w     http.ResponseWriter
	peers *peerSet
	path  string
	ref   oci.Reference
	size  int64
	h     hash.Hash

	winStart, winEnd int64     // the client's window [start, end)
	segs             []segment // which peer sent which part of the blob
	marks            [][]byte  // hash state at the end of each segment
}

// copier returns the verifiedCopy that takes s's bytes in blob order: it
// hashes them, writes the client's window and holds its tail until finish.
func (s *stream) copier() *verifiedCopy {
	v := &verifiedCopy{
		w: s.w, h: s.h, winStart: s.winStart, winEnd: s.winEnd,
		fetched: s.m.metrics.BytesFetched.WithLabelValues("peer"),
		served:  s.m.metrics.BytesServed.WithLabelValues("local"),
	}
	if s.m.verifyOff {
		v.h = nil
	}
	return v
}

// finish ends a transfer whose bytes all went through v, from one peer or
// several: the digest is checked first (a mismatch blames the peers of
// s.segs and aborts the response), and only then is the held tail of the
// client's window written.
func (s *stream) finish(v *verifiedCopy) error {
	if v.Off() != s.size || v.Sum() != nil && digest.NewDigest(s.ref.Digest.Algorithm(), v.Sum()) != s.ref.Digest {
		s.m.blame(s.ctx, s.ref, s.path, s.size, s.segs, s.marks, s.peers.remaining())
		return fmt.Errorf("blob %s from %d peer segment(s) does not match its digest: %w", s.ref.Digest, len(s.segs), registry.ErrAborted)
	}
	if held := v.Held(); len(held) > 0 {
		if _, err := s.w.Write(held); err != nil {
			return registry.ErrAborted
		}
		s.m.metrics.BytesServed.WithLabelValues("local").Add(float64(len(held)))
	}
	return nil
}

func (s *stream) run(resp *http.Response, p routing.Peer) error {
	v := s.copier()
	for {
		start := v.Off()
		_, err := v.ReadFrom(s.ctx, resp.Body, s.size-start)
		resp.Body.Close()
		s.segs = append(s.segs, segment{peer: p, start: start, end: v.Off()})
		s.marks = append(s.marks, hashState(s.h))
		registry.NoteFetched(s.ctx, p.ID, v.Off()-start)
		if err == nil {
			break
		}
		if errors.Is(err, errClientGone) {
			return registry.ErrAborted
		}
		// The peer died or misbehaved mid-blob: resume from the offset
		// reached on another peer that holds it.
		off := v.Off()
		s.m.log.Warn("peer failed mid-blob; resuming on another peer", "peer", p.ID, "digest", s.ref.Digest, "offset", off, "err", err)
		s.m.metrics.ResumedFetches.Inc()
		s.m.providerEvent(dropReason(err))
		s.peers.fail(p)
		resp, p, err = s.m.first(s.ctx, s.peers, http.MethodGet, s.path, off, true)
		if err != nil {
			return fmt.Errorf("resume %s at %d: %v: %w", s.ref.Digest, off, err, registry.ErrAborted)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != s.size-off {
			s.m.providerEvent(reasonSizeDisagrees)
			resp.Body.Close()
			return fmt.Errorf("resume %s: peer %s sent %d bytes for %d: %w", s.ref.Digest, p.ID, resp.ContentLength, s.size-off, registry.ErrAborted)
		}
	}
	return s.finish(v)
}
