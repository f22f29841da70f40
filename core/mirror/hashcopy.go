package mirror

import (
	"bytes"
	"context"
	"errors"
	"hash"
	"io"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// verifiedCopy writes a blob, in blob order, to a client while hashing
// every byte once (RATIONALE.md, "Why one user-space pass …"): each
// buffer is read from the peer once, hashed and written from the same
// memory, with no copy in between. Only the part inside the client's
// window [winStart, winEnd) is written; the bytes that complete the
// window are held back (Held) until the caller checked the digest, so a
// client never sees a complete body, whole or ranged, before it is
// verified. The caller checks Sum against the digest when every byte went
// through, then writes Held.
//
// It is not safe for concurrent use: one goroutine feeds it, by ReadFrom
// (a peer's body, pipelined) or Write (bytes the caller already holds, in
// order).
type verifiedCopy struct {
	w                io.Writer // the client
	h                hash.Hash // nil: not hashed (the benchmark's A/B only)
	off              int64     // blob bytes taken so far; all hashed once a call returns
	winStart, winEnd int64
	held             []byte

	fetched, served prometheus.Counter // may be nil
}

// errClientGone is a failed write to the client, or a context that ended
// (the client left or the transfer went over its budget).
var errClientGone = errors.New("client went away")

// copyChunk is the size of the buffers a blob is read into, hashed from
// and written from. Per-buffer costs (a channel hand-off each way, a write
// syscall, a wake-up of the hasher) vanish beside the bytes: measured in
// BenchmarkPeerBlob on 2 cores, 1 MiB cost 1.17 mirror-CPU-s/GiB, 512 KiB
// 1.33, 256 KiB ~1.8 (RATIONALE.md, "Why one user-space pass …").
const copyChunk = 1 << 20

// firstChunk is the size of the first read from a peer; reads then double
// up to copyChunk. A small first read gets the first bytes to the client
// quickly; large later reads keep the per-byte overhead low.
const firstChunk = 16 << 10

// copyDepth is how many buffers circulate between the copying goroutine
// and the hasher: one being hashed (and written), one being read.
const copyDepth = 2

// copyPool recycles copy buffers across requests.
var copyPool = sync.Pool{New: func() any { b := make([]byte, copyChunk); return &b }}

// Off is how many blob bytes went through.
func (v *verifiedCopy) Off() int64 { return v.off }

// Held is the verified-only tail of the window: write it once the digest
// matched.
func (v *verifiedCopy) Held() []byte { return v.held }

// Sum is the hash of every byte so far (nil when not hashing).
func (v *verifiedCopy) Sum() hash.Hash { return v.h }

// Write hashes p and writes its part inside the window, synchronously:
// p is not used after Write returns. An error is errClientGone.
func (v *verifiedCopy) Write(p []byte) (int, error) {
	if v.h != nil {
		v.h.Write(p)
	}
	if err := v.emit(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// emit writes the part of p (the blob bytes at v.off) inside the window
// and advances v.off; the bytes that complete the window are held
// (copied) instead.
func (v *verifiedCopy) emit(p []byte) error {
	lo, hi := v.off, v.off+int64(len(p))
	v.off = hi
	if v.fetched != nil {
		v.fetched.Add(float64(len(p)))
	}
	if hi <= v.winStart || lo >= v.winEnd {
		return nil
	}
	part := p[max(v.winStart, lo)-lo : min(v.winEnd, hi)-lo]
	if hi >= v.winEnd {
		v.held = bytes.Clone(part)
		return nil
	}
	if _, err := v.w.Write(part); err != nil {
		return errClientGone
	}
	if v.served != nil {
		v.served.Add(float64(len(part)))
	}
	return nil
}

// ReadFrom copies the next n blob bytes from src: each buffer is read
// once, then hashed by a second goroutine while this one writes it to the
// client and reads the next buffer, so hashing overlaps the I/O and a
// transfer runs at the pace of the slower of the two, not their sum. A
// buffer is reused only after it was both hashed and written; the hasher
// and the writer only read it, so they never race. Every byte read is
// hashed before ReadFrom returns, even on error.
//
// A short src (EOF before n bytes) is io.ErrUnexpectedEOF; a read error
// is returned as is (the caller resumes elsewhere from Off); a failed
// write, or ctx ending, is errClientGone.
func (v *verifiedCopy) ReadFrom(ctx context.Context, src io.Reader, n int64) (int64, error) {
	end := v.off + n
	if v.h == nil {
		return v.copyLoop(ctx, src, end, nil)
	}
	var bufs [copyDepth]*[]byte
	free := make(chan []byte, copyDepth)
	for i := range bufs {
		bufs[i] = copyPool.Get().(*[]byte)
		free <- *bufs[i]
	}
	toHash := make(chan []byte, copyDepth)
	hashed := make(chan struct{})
	go func() {
		defer close(hashed)
		for b := range toHash {
			v.h.Write(b)
			free <- b[:cap(b)]
		}
	}()
	k, err := v.copyLoop(ctx, src, end, &pipe{free: free, toHash: toHash})
	close(toHash)
	<-hashed
	for _, b := range bufs {
		copyPool.Put(b)
	}
	return k, err
}

// pipe is the hand-off between the copy loop and the hasher.
type pipe struct {
	free   chan []byte // buffers hashed and free to read into
	toHash chan []byte // filled buffers, in blob order
}

// copyLoop reads src into buffers up to blob offset end and emits them;
// with p set, each buffer is also handed to the hasher before it is
// written.
func (v *verifiedCopy) copyLoop(ctx context.Context, src io.Reader, end int64, p *pipe) (int64, error) {
	start := v.off
	var own *[]byte
	if p == nil {
		own = copyPool.Get().(*[]byte)
		defer copyPool.Put(own)
	}
	next := int64(firstChunk)
	for v.off < end {
		var buf []byte
		if p != nil {
			select {
			case buf = <-p.free:
			case <-ctx.Done():
				return v.off - start, errClientGone
			}
		} else {
			buf = *own
		}
		if ctx.Err() != nil { // over the transfer budget, or the client left
			if p != nil {
				p.free <- buf
			}
			return v.off - start, errClientGone
		}
		k, err := io.ReadFull(src, buf[:min(next, int64(len(buf)), end-v.off)])
		next = min(2*next, int64(len(buf)))
		if k == 0 {
			if p != nil {
				p.free <- buf
			}
		} else {
			if p != nil {
				p.toHash <- buf[:k]
			}
			if werr := v.emit(buf[:k]); werr != nil {
				return v.off - start, werr
			}
		}
		if err != nil {
			if v.off == end && (errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF)) {
				return v.off - start, nil
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return v.off - start, err
		}
	}
	return v.off - start, nil
}
