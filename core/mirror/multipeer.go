package mirror

import (
	"context"
	"fmt"
	"hash"
	"net/http"
	"sync"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
)

// A large blob held by several providers is fetched from up to
// Mirror.parallel of them at once: the blob is cut into fixed chunks, each
// worker (one per provider) takes the next chunk and asks its provider for
// it with Range, and this goroutine hashes the chunks in blob order and
// writes them to the client as they are verified so far. The chunk that
// ends the client's window is held back until the whole blob matched its
// digest, as on the single-peer path: a mismatch aborts the response.
//
// Rebalancing is work stealing. A worker whose provider fails (a reset or
// an early EOF, seen on the read that hits it) leaves its piece, with the
// bytes it received, and the rest is asked for at once: by a worker with
// nothing to do, or else by a new worker on a provider not used yet, or
// else on a second connection to the live provider that delivered the
// most so far. It never waits for a busy worker to finish its chunk, nor
// for a timeout. A worker with nothing to take (the window is
// full, or every chunk is taken) splits the earliest piece still in
// progress and fetches its second half: a slow provider holding the head
// of the window is relieved of half its work each time the others run dry.
//
// Memory is bounded: only chunks inside a window of parallel+2 chunks past
// the one being hashed are fetched, so at most that many chunk buffers
// exist per transfer, and the windows of all transfers together fit in
// the node's multi-peer memory (rangemem.go).
const (
	// defaultParallel is how many providers a large blob is fetched from
	// at once by default (--peer-fetch-parallel).
	defaultParallel = 3
	// multiPeerMin is the smallest blob fetched from several providers.
	multiPeerMin = 8 << 20
	// rangeChunk is the unit of work: one Range request.
	rangeChunk = 4 << 20
	// minSteal is the smallest piece split off for another worker.
	minSteal = 256 << 10
	// readStep bounds one read from a provider, so progress (and the hash)
	// moves in steps a client sees.
	readStep = 256 << 10
)

// rangePool recycles chunk buffers across transfers.
var rangePool = sync.Pool{New: func() any { b := make([]byte, rangeChunk); return &b }}

// piece is the part [lo, hi) of a blob one worker fetches; buf holds its
// bytes (a slice of its chunk's buffer) and the prefix filled is received.
type piece struct {
	lo, hi  int64
	buf     []byte
	filled  int64
	reading int64 // offset up to which a read in progress may write (a split stays above it)
	owner   int   // worker, or -1 when free
	segs    []segment
}

func (pc *piece) done() bool { return pc.lo+pc.filled == pc.hi }

// fetch is the shared state of one multi-peer transfer.
type fetch struct {
	m      *Mirror
	ctx    context.Context
	cancel context.CancelFunc
	peers  *peerSet
	path   string
	size   int64
	window int

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change
	pieces  []*piece      // in blob order; pieces before head are hashed
	head    int
	chunks  int   // chunks cut into pieces so far
	base    int64 // blob bytes hashed so far
	bufs    map[int64]*[]byte
	workers int // running workers
	idle    int // workers waiting in take for something to do
	ids     int
	// got is the bytes each provider (by ID) delivered so far; a provider
	// that failed is in dead. They choose who takes over a dead provider's
	// range at once (multipeer_worker.go, drop).
	got  map[string]int64
	dead map[string]bool
	live map[string]routing.Peer // providers with a worker started
}

// multiPeer reports whether s should be fetched from several providers:
// a large blob with another provider known besides the first.
func (m *Mirror) multiPeer(s *stream) bool {
	return m.parallel > 1 && s.size >= multiPeerMin && len(s.peers.remaining()) > 0
}

// fetchRanges runs s from several providers; resp is the first provider's
// answer for the whole blob, used for the first chunk.
func (m *Mirror) fetchRanges(s *stream, resp *http.Response, p routing.Peer) error {
	// The window is what is left of the node's multi-peer memory, up to
	// parallel+2 chunks; with less than two, one provider at a time.
	window := m.ranges.reserve(m.parallel + 2)
	if window < 2 {
		m.ranges.release(window)
		m.metrics.MultiPeerMemoryFalls.Inc()
		m.metrics.PeerTransfers.WithLabelValues("single").Inc()
		return s.run(resp, p)
	}
	m.metrics.PeerTransfers.WithLabelValues("multi").Inc()
	defer m.ranges.release(window)
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	f := &fetch{m: m, ctx: ctx, cancel: cancel, peers: s.peers, path: s.path, size: s.size,
		window: window, changed: make(chan struct{}), bufs: map[int64]*[]byte{},
		got: map[string]int64{}, dead: map[string]bool{}, live: map[string]routing.Peer{}}
	defer f.release()
	f.spawn(p, resp.Body, 0)
	for f.workers < m.parallel {
		q, ok := s.peers.poll()
		if !ok {
			break
		}
		f.spawn(q, nil, 0)
	}
	err := f.consume(s)
	cancel()
	f.mu.Lock()
	for f.workers > 0 { // workers write into chunk buffers: wait before recycling them
		ch := f.changed
		f.mu.Unlock()
		<-ch
		f.mu.Lock()
	}
	f.mu.Unlock()
	return err
}

// consume hashes the blob in order as workers fill it, writes the client's
// window through the same verifiedCopy as the single-peer path (so the
// window, the held tail and the counters are one piece of code), and
// completes only when the digest matched (stream.finish).
func (f *fetch) consume(s *stream) error {
	v := s.copier()
	v.h = s.h // always hashed here: the segment marks are hash states
	for f.base < f.size {
		part, sg, closed, err := f.ready()
		if err != nil {
			if s.ctx.Err() != nil {
				return registry.ErrAborted
			}
			return fmt.Errorf("blob %s at %d: %v: %w", s.ref.Digest, f.base, err, registry.ErrAborted)
		}
		if _, err := v.Write(part); err != nil {
			return registry.ErrAborted
		}
		if closed {
			s.segs, s.marks = addSegment(s.segs, s.marks, sg, s.h)
			registry.NoteFetched(s.ctx, sg.peer.ID, sg.end-sg.start)
		}
		f.advance(v.Off())
	}
	return s.finish(v)
}

// addSegment records sg as hashed, with the hash state at its end; a
// segment from the same peer as the last one extends it.
func addSegment(segs []segment, marks [][]byte, sg segment, h hash.Hash) ([]segment, [][]byte) {
	if k := len(segs) - 1; k >= 0 && segs[k].peer.ID == sg.peer.ID && segs[k].end == sg.start {
		segs[k].end = sg.end
		marks[k] = hashState(h)
		return segs, marks
	}
	return append(segs, sg), append(marks, hashState(h))
}

// ready waits for bytes at f.base and returns them (up to the end of the
// segment they belong to), that segment, and whether it is closed (the
// returned bytes end it). It spawns workers when providers are free and
// fails when none is left with work remaining.
func (f *fetch) ready() (part []byte, sg segment, closed bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if pc := f.headPiece(); pc != nil && f.base < pc.lo+pc.filled {
			for i, g := range pc.segs {
				if f.base >= g.end {
					continue
				}
				end := min(g.end, pc.lo+pc.filled)
				closed = end == g.end && (i < len(pc.segs)-1 || pc.done())
				return pc.buf[f.base-pc.lo : end-pc.lo], g, closed, nil
			}
		}
		if f.ctx.Err() != nil {
			return nil, segment{}, false, f.ctx.Err()
		}
		// Fewer workers than wanted: start one on a provider not tried yet.
		if f.workers < f.m.parallel {
			if p, ok := f.peers.poll(); ok {
				f.spawnLocked(p)
				continue
			}
		}
		if f.workers == 0 {
			// Every provider failed: wait for the lookups, then look again.
			f.mu.Unlock()
			p, ok := f.peers.next(f.ctx)
			f.mu.Lock()
			if !ok {
				return nil, segment{}, false, fmt.Errorf("every provider failed: %w", store.ErrNotFound)
			}
			f.spawnLocked(p)
			continue
		}
		ch, found := f.changed, f.peers.changed()
		f.mu.Unlock()
		select {
		case <-ch:
		case <-found:
		case <-f.ctx.Done():
		}
		f.mu.Lock()
	}
}

// headPiece returns the piece holding f.base; f.mu is held.
func (f *fetch) headPiece() *piece {
	for f.head < len(f.pieces) && f.pieces[f.head].hi <= f.base {
		f.head++
	}
	if f.head < len(f.pieces) && f.pieces[f.head].lo <= f.base {
		return f.pieces[f.head]
	}
	return nil
}

// advance marks the blob hashed up to off, recycles chunk buffers wholly
// behind it, and lets workers move the window.
func (f *fetch) advance(off int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.base = off
	for start, b := range f.bufs {
		if start+int64(len(*b)) <= off || start+rangeChunk <= off {
			rangePool.Put(b)
			delete(f.bufs, start)
			f.m.ranges.put()
		}
	}
	f.signal()
}

// release recycles the remaining chunk buffers; every worker has ended.
func (f *fetch) release() {
	for _, b := range f.bufs {
		rangePool.Put(b)
		f.m.ranges.put()
	}
	clear(f.bufs)
}

// signal wakes waiters; f.mu is held.
func (f *fetch) signal() {
	close(f.changed)
	f.changed = make(chan struct{})
}
