package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
)

const chunkSize = 256 << 10

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
	resp, p, err := m.first(ctx, peers, method, path, 0)
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

	off              int64 // blob bytes read so far (all of them hashed by the end)
	winStart, winEnd int64 // the client's window [start, end)
	held             []byte
	segs             []segment // which peer sent which part of the blob
	marks            [][]byte  // hash state at the end of each segment (hasher-owned until finishHash)

	// The hasher runs beside the copy: reads and writes to sockets in this
	// goroutine, sha256 in another, so a transfer goes as fast as the
	// slower of the two rather than their sum.
	free   chan []byte // buffers ready to be read into
	toHash chan []byte // chunks in blob order
	hashed chan struct{}
}

// pipeline is how many chunk buffers circulate between copy and hasher.
const pipeline = 4

// chunkPool recycles chunk buffers across requests.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, chunkSize); return &b }}

func (s *stream) startHasher() {
	s.free = make(chan []byte, pipeline)
	for range pipeline {
		s.free <- *(chunkPool.Get().(*[]byte))
	}
	s.toHash = make(chan []byte, pipeline)
	s.hashed = make(chan struct{})
	go func() {
		defer close(s.hashed)
		for b := range s.toHash {
			if b == nil { // a segment ended: remember the state there
				s.marks = append(s.marks, hashState(s.h))
				continue
			}
			if !s.m.verifyOff {
				s.h.Write(b)
			}
			s.free <- b[:cap(b)]
		}
	}()
}

// finishHash waits for every chunk to be hashed and recycles the buffers.
func (s *stream) finishHash() {
	close(s.toHash)
	<-s.hashed
	for range pipeline {
		b := <-s.free
		chunkPool.Put(&b)
	}
}

func (s *stream) run(resp *http.Response, p routing.Peer) error {
	s.startHasher()
	hashing := true
	defer func() {
		if hashing {
			s.finishHash()
		}
	}()
	for {
		start := s.off
		err := s.copyFrom(resp.Body)
		resp.Body.Close()
		s.segs = append(s.segs, segment{peer: p, start: start, end: s.off})
		registry.NoteFetched(s.ctx, p.ID, s.off-start)
		s.toHash <- nil
		if err == nil {
			break
		}
		if errors.Is(err, errClientGone) {
			return registry.ErrAborted
		}
		// The peer died or misbehaved mid-blob: resume from s.off on
		// another peer that holds it.
		s.m.log.Warn("peer failed mid-blob; resuming on another peer", "peer", p.ID, "digest", s.ref.Digest, "offset", s.off, "err", err)
		s.m.metrics.ResumedFetches.Inc()
		s.peers.fail(p)
		resp, p, err = s.m.first(s.ctx, s.peers, http.MethodGet, s.path, s.off)
		if err != nil {
			return fmt.Errorf("resume %s at %d: %v: %w", s.ref.Digest, s.off, err, registry.ErrAborted)
		}
		if resp.ContentLength >= 0 && resp.ContentLength != s.size-s.off {
			resp.Body.Close()
			return fmt.Errorf("resume %s: peer %s sent %d bytes for %d: %w", s.ref.Digest, p.ID, resp.ContentLength, s.size-s.off, registry.ErrAborted)
		}
	}
	s.finishHash()
	hashing = false
	if s.off != s.size || !s.m.verifyOff && digest.NewDigest(s.ref.Digest.Algorithm(), s.h) != s.ref.Digest {
		s.m.blame(s.ctx, s.ref, s.path, s.size, s.segs, s.marks, s.peers.remaining())
		return fmt.Errorf("blob %s from peers does not match its digest: %w", s.ref.Digest, registry.ErrAborted)
	}
	if len(s.held) > 0 {
		if _, err := s.w.Write(s.held); err != nil {
			return registry.ErrAborted
		}
		s.m.metrics.BytesServed.WithLabelValues("local").Add(float64(len(s.held)))
	}
	return nil
}

var errClientGone = errors.New("client went away")

// firstChunk is the size of the first read from a peer; reads then double
// up to chunkSize. A small first read gets the first bytes to the client
// quickly; large later reads keep the per-byte overhead low.
const firstChunk = 16 << 10

// copyFrom reads body chunk by chunk, hands each chunk to the hasher and
// writes the part inside the window at once, except the chunk that ends
// the window: that one is held (copied) until the whole blob hashed and
// matched (run writes it), so a client never sees a complete body, whole
// or ranged, before the digest is verified. A buffer goes back to the free
// list only once hashed; it is only reused by this goroutine after its
// write returned, so the hasher and the writer never race on it.
func (s *stream) copyFrom(body io.Reader) error {
	next := int64(firstChunk)
	fetched := s.m.metrics.BytesFetched.WithLabelValues("peer")
	served := s.m.metrics.BytesServed.WithLabelValues("local")
	for s.off < s.size {
		var buf []byte
		select {
		case buf = <-s.free:
		case <-s.ctx.Done():
			return errClientGone
		}
		if s.ctx.Err() != nil { // over the transfer budget, or the client left
			s.free <- buf
			return errClientGone
		}
		n, err := io.ReadFull(body, buf[:min(next, int64(len(buf)), s.size-s.off)])
		next = min(2*next, int64(len(buf)))
		if n == 0 {
			s.free <- buf
		} else {
			chunk := buf[:n]
			s.toHash <- chunk
			lo, hi := s.off, s.off+int64(n)
			s.off = hi
			fetched.Add(float64(n))
			if hi > s.winStart && lo < s.winEnd {
				part := chunk[max(s.winStart, lo)-lo : min(s.winEnd, hi)-lo]
				if hi < s.winEnd {
					if _, werr := s.w.Write(part); werr != nil {
						return errClientGone
					}
					served.Add(float64(len(part)))
				} else {
					s.held = bytes.Clone(part)
				}
			}
		}
		if err != nil {
			if s.off == s.size && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
