package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
)

// worker fetches pieces of one blob from one provider, reusing its open
// answer while the next piece starts where the answer stands.
type worker struct {
	f        *fetch
	id       int
	p        routing.Peer
	body     io.ReadCloser // the open answer, covering [pos, end)
	pos, end int64
}

// spawn starts a worker on p; body, when not nil, is p's answer for the
// whole blob (from first), positioned at pos.
func (f *fetch) spawn(p routing.Peer, body io.ReadCloser, pos int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w := f.spawnLocked(p)
	if body != nil {
		w.body, w.pos, w.end = body, pos, f.size
		// The answer belongs to the request's context, not f's: close it
		// when f ends so a blocked read returns.
		stop := context.AfterFunc(f.ctx, func() { body.Close() })
		w.body = &stopCloser{ReadCloser: body, stop: stop}
	}
}

// spawnLocked starts a worker on p; f.mu is held.
func (f *fetch) spawnLocked(p routing.Peer) *worker {
	f.ids++
	f.workers++
	f.live[p.ID] = p
	w := &worker{f: f, id: f.ids, p: p}
	go w.run()
	return w
}

type stopCloser struct {
	io.ReadCloser
	stop func() bool
}

func (s *stopCloser) Close() error {
	s.stop()
	return s.ReadCloser.Close()
}

func (w *worker) run() {
	f := w.f
	defer func() {
		if w.body != nil {
			w.body.Close()
		}
		f.mu.Lock()
		f.workers--
		f.signal()
		f.mu.Unlock()
	}()
	for {
		pc := f.take(w)
		if pc == nil {
			return
		}
		if err := w.fill(pc); err != nil {
			f.drop(pc, w, err)
			return
		}
	}
}

// take returns the next piece for w, waiting while none is available;
// nil when the blob is complete or the transfer ended. In order: a piece
// a failed worker left (the one where w's answer stands first), a new
// chunk inside the window, half of the earliest piece still in progress.
func (f *fetch) take(w *worker) *piece {
	f.mu.Lock()
	defer f.mu.Unlock()
	for {
		if f.ctx.Err() != nil {
			return nil
		}
		var free *piece
		complete := true
		for _, pc := range f.pieces[f.head:] {
			if pc.done() {
				continue
			}
			complete = false
			if pc.owner < 0 && (free == nil || pc.lo+pc.filled == w.pos) {
				free = pc
			}
		}
		if free != nil {
			free.owner = w.id
			return free
		}
		total := int((f.size + rangeChunk - 1) / rangeChunk)
		if f.chunks < total {
			if f.chunks < int(f.base/rangeChunk)+f.window {
				return f.cut(w)
			}
		} else if complete {
			return nil
		}
		if pc := f.steal(w); pc != nil {
			return pc
		}
		ch := f.changed
		f.idle++
		f.mu.Unlock()
		select {
		case <-ch:
		case <-f.ctx.Done():
		}
		f.mu.Lock()
		f.idle--
	}
}

// cut makes the next chunk a piece owned by w; f.mu is held.
func (f *fetch) cut(w *worker) *piece {
	lo := int64(f.chunks) * rangeChunk
	hi := min(lo+rangeChunk, f.size)
	b := rangePool.Get().(*[]byte)
	f.m.ranges.got()
	f.bufs[lo] = b
	pc := &piece{lo: lo, hi: hi, buf: (*b)[:hi-lo], owner: w.id}
	f.pieces = append(f.pieces, pc)
	f.chunks++
	return pc
}

// steal splits the earliest piece in progress with enough left and gives
// its second half to w; f.mu is held.
func (f *fetch) steal(w *worker) *piece {
	for i := f.head; i < len(f.pieces); i++ {
		pc := f.pieces[i]
		if pc.owner < 0 || pc.owner == w.id {
			continue
		}
		from := max(pc.lo+pc.filled, pc.reading)
		if pc.hi-from < 2*minSteal {
			continue
		}
		mid := from + (pc.hi-from)/2
		np := &piece{lo: mid, hi: pc.hi, buf: pc.buf[mid-pc.lo:], owner: w.id}
		pc.hi, pc.buf = mid, pc.buf[:mid-pc.lo]
		f.pieces = append(f.pieces[:i+1], append([]*piece{np}, f.pieces[i+1:]...)...)
		return np
	}
	return nil
}

// drop frees pc after w's provider failed on it: the bytes received stay,
// the rest goes to the next worker, and the provider is not asked again
// for this blob.
//
// The rest is asked for at once. A worker waiting for work takes it (the
// signal wakes it); with none waiting, a new worker starts on a provider
// not used yet, or else on the live provider that delivered the most so
// far (a second connection to it): waiting for a busy worker to finish
// its own chunk would stall the blob's head for a chunk's time, and the
// window behind it.
func (f *fetch) drop(pc *piece, w *worker, err error) {
	f.mu.Lock()
	pc.owner, pc.reading = -1, 0
	f.dead[w.p.ID] = true
	ended := f.ctx.Err() != nil
	var took routing.Peer
	if !ended && f.idle == 0 {
		if p, ok := f.peers.poll(); ok {
			took = p
		} else if p, ok := f.busiest(); ok {
			took = p
		}
		if took.ID != "" {
			f.spawnLocked(took)
		}
	}
	f.signal()
	f.mu.Unlock()
	if ended {
		return
	}
	f.m.log.Warn("peer failed mid-blob; its range goes to another peer", "peer", w.p.ID, "offset", pc.lo+pc.filled, "to", took.ID, "err", err)
	f.m.metrics.ResumedFetches.Inc()
	if errors.Is(err, errSizeDisagrees) {
		f.m.providerEvent(reasonSizeDisagrees)
		f.peers.skip(w.p) // not used for this blob, but not blamed: the first provider may be the liar
		return
	}
	f.m.providerEvent(dropReason(err))
	f.peers.fail(w.p)
}

// busiest returns the live provider that delivered the most bytes of the
// blob so far; f.mu is held.
func (f *fetch) busiest() (routing.Peer, bool) {
	var best routing.Peer
	most := int64(-1)
	for id, p := range f.live {
		if !f.dead[id] && f.got[id] > most {
			best, most = p, f.got[id]
		}
	}
	return best, most >= 0
}

// fill fetches the rest of pc from w's provider.
func (w *worker) fill(pc *piece) error {
	f := w.f
	f.mu.Lock()
	start, hi := pc.lo+pc.filled, pc.hi
	f.mu.Unlock()
	if w.body == nil || w.pos != start || w.end < hi {
		if w.body != nil {
			w.body.Close()
			w.body = nil
		}
		body, err := f.open(w.p, start, hi)
		if err != nil {
			return err
		}
		w.body, w.pos, w.end = body, start, hi
	}
	for {
		f.mu.Lock()
		at := pc.lo + pc.filled
		if at >= pc.hi {
			f.mu.Unlock()
			return nil
		}
		n := min(readStep, pc.hi-at)
		pc.reading = at + n
		dst := pc.buf[pc.filled : pc.filled+n]
		f.mu.Unlock()
		k, err := w.body.Read(dst)
		f.mu.Lock()
		if k > 0 {
			pc.filled += int64(k)
			f.got[w.p.ID] += int64(k)
			if g := len(pc.segs) - 1; g >= 0 && pc.segs[g].peer.ID == w.p.ID && pc.segs[g].end == at {
				pc.segs[g].end += int64(k)
			} else {
				pc.segs = append(pc.segs, segment{peer: w.p, start: at, end: at + int64(k)})
			}
			f.signal()
		}
		pc.reading = 0
		done := pc.done()
		f.mu.Unlock()
		w.pos += int64(k)
		if err != nil {
			if done && errors.Is(err, io.EOF) {
				w.body.Close()
				w.body = nil
				return nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return err
		}
	}
}

// open asks p for the blob's bytes [lo, hi).
func (f *fetch) open(p routing.Peer, lo, hi int64) (io.ReadCloser, error) {
	m := f.m
	if m.tlsOnly && p.Scheme != "https" {
		return nil, fmt.Errorf("peer %s announces %q but this node fetches from peers over https only", p.ID, p.Scheme)
	}
	rctx, cancel := context.WithCancel(f.ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, p.URL()+f.path, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	req.Header.Set(registry.PeerHeader, m.self)
	req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", lo, hi-1))
	m.metrics.PeerRangeRequests.Inc()
	start := time.Now()
	resp, err := m.client.Do(req)
	if err == nil && (resp.StatusCode != http.StatusPartialContent || resp.ContentLength != hi-lo ||
		resp.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", lo, hi-1, f.size)) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		err = &statusError{addr: p.Addr.String(), code: resp.StatusCode}
		cr := resp.Header.Get("Content-Range")
		if resp.StatusCode == http.StatusPartialContent {
			err = fmt.Errorf("%w: %s answered range %d-%d with %q, %d bytes", errBadPeer, p.Addr, lo, hi-1, cr, resp.ContentLength)
		}
		if total, ok := rangeTotal(cr); ok && total != f.size &&
			(resp.StatusCode == http.StatusPartialContent || resp.StatusCode == http.StatusRequestedRangeNotSatisfiable) {
			// A blob of another size than the first provider's (a range
			// past its end is 416, one across it is cut short): one of the
			// two lies, and nothing here says which (the digest will). Not
			// a sign of ill health.
			err = fmt.Errorf("%w: %s has it as %d bytes, the first provider as %d", errSizeDisagrees, p.Addr, total, f.size)
		}
	}
	m.health.noteAnswer(f.ctx, rctx, p, time.Since(start), err)
	if err != nil {
		cancel()
		return nil, err
	}
	return newWatchdog(resp.Body, cancel, m.idleTimeout), nil
}

// rangeTotal returns the complete length of a Content-Range value
// ("bytes 0-9/100", "bytes */100"), when it is given.
func rangeTotal(cr string) (int64, bool) {
	_, total, ok := strings.Cut(cr, "/")
	if !ok || !strings.HasPrefix(cr, "bytes ") {
		return 0, false
	}
	n, err := strconv.ParseInt(total, 10, 64)
	return n, err == nil && n >= 0
}
