package coalesce

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/policy"
)

// errSpoolFull: the blob does not fit in the spool; not coalesced.
var errSpoolFull = errors.New("coalesce spool full")

// blob is one spool entry: a file the fetch appends to and readers follow.
type blob struct {
	d    digest.Digest
	path string
	ref  oci.Reference     // what it was fetched as (registry, repository, digest)
	up   upstream.Upstream // the upstream its fetch decision saw

	ready chan struct{} // closed once size is known, or the fetch failed first
	size  int64         // set before ready closes

	mu      sync.Mutex
	written int64
	done    bool  // every byte written and verified
	err     error // the fetch failed; readers abort
	notify  chan struct{}
	readers int
	expires time.Time // set when done
	dropped bool      // removed from the spool; the file is gone
}

func (b *blob) expired(now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.done && b.readers == 0 && now.After(b.expires)
}

// progress records n more bytes, the end, or a failure, and wakes readers.
func (b *blob) progress(n int64, done bool, err error) {
	b.mu.Lock()
	b.written += n
	b.done = b.done || done
	if err != nil && b.err == nil {
		b.err = err
	}
	close(b.notify)
	b.notify = make(chan struct{})
	b.mu.Unlock()
}

// serveBlob answers a blob from the spool, starting the fetch for a
// coalesce request the policy allows.
func (c *Coalescer) serveBlob(ctx context.Context, w http.ResponseWriter, r *http.Request, ref oci.Reference, peer *policy.Peer, fetch bool) error {
	if !ref.Digest.Algorithm().Available() {
		return store.ErrNotFound
	}
	c.mu.Lock()
	b := c.blobs[ref.Digest]
	c.mu.Unlock()
	switch {
	case b != nil:
		if !c.decide(ctx, b.ref, policy.KindBlob, peer, b.up) {
			return store.ErrNotFound
		}
	case !fetch:
		return store.ErrNotFound
	default:
		client, up, ok := c.allowed(ctx, ref, policy.KindBlob, peer)
		if !ok {
			return store.ErrNotFound
		}
		if b = c.startBlob(ref, client, up); b == nil {
			return store.ErrNotFound // closing
		}
	}
	c.m.CoalesceWaiters.Inc()
	defer c.m.CoalesceWaiters.Dec()
	wctx, cancel := context.WithTimeout(ctx, c.cfg.FirstByte)
	defer cancel()
	select {
	case <-b.ready:
	case <-wctx.Done():
		return fmt.Errorf("blob %s: upstream slower than %v: %w", ref.Digest, c.cfg.FirstByte, store.ErrNotFound)
	}
	f, err := c.openReader(b)
	if err != nil {
		return err
	}
	defer c.closeReader(b, f)
	return c.follow(ctx, w, r, b, f)
}

// startBlob returns the entry of ref's blob, starting its fetch if no one
// has; nil once Close began.
func (c *Coalescer) startBlob(ref oci.Reference, client Upstream, up upstream.Upstream) *blob {
	c.mu.Lock()
	defer c.mu.Unlock()
	if b := c.blobs[ref.Digest]; b != nil || c.closed {
		return b
	}
	ref.Tag = ""
	b := &blob{d: ref.Digest, path: filepath.Join(c.cfg.Dir, ref.Digest.Encoded()), ref: ref, up: up,
		ready: make(chan struct{}), notify: make(chan struct{})}
	c.blobs[ref.Digest] = b
	c.wg.Go(func() { c.fetchBlob(ref, b, client) })
	return b
}

// fetchBlob streams the blob from the upstream into its spool file. It
// lives until Close, not as long as the request that started it.
func (c *Coalescer) fetchBlob(ref oci.Reference, b *blob, client Upstream) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	budget := time.AfterFunc(registry.BaseBudget, cancel)
	defer budget.Stop()
	readyOnce := sync.OnceFunc(func() { close(b.ready) })
	defer readyOnce()
	fail := func(err error) {
		c.log.Warn("coalesce: blob fetch failed", "digest", b.d, "err", err)
		result := "failed"
		if errors.Is(err, errSpoolFull) {
			result = "spool_full"
		}
		c.m.CoalesceFetches.WithLabelValues(policy.KindBlob, result).Inc()
		b.progress(0, false, err)
		c.drop(b)
	}
	up, err := client.Blob(ctx, ref, b.d, -1)
	if err != nil {
		c.rest(ref.Registry, err)
		fail(err)
		return
	}
	defer up.Close()
	size := up.Descriptor.Size
	if err := c.reserve(b, size); err != nil {
		fail(err)
		return
	}
	budget.Reset(registry.TransferBudget(size))
	f, err := os.OpenFile(b.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		fail(fmt.Errorf("spool: %w", err))
		return
	}
	defer f.Close()
	readyOnce()
	c.advertise(b.d)
	buf := make([]byte, 256<<10)
	for {
		n, rerr := up.Read(buf)
		if n > 0 {
			c.m.CoalesceUpstreamBytes.Add(float64(n))
			if _, err := f.Write(buf[:n]); err != nil {
				fail(fmt.Errorf("spool: %w", err))
				return
			}
			b.progress(int64(n), false, nil)
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			fail(rerr) // a digest mismatch included: never completed
			return
		}
	}
	b.mu.Lock()
	short := b.written != size
	b.mu.Unlock()
	if short {
		fail(fmt.Errorf("upstream sent %d bytes of %d", b.written, size))
		return
	}
	b.mu.Lock()
	b.expires = time.Now().Add(c.cfg.TTL)
	b.mu.Unlock()
	c.m.CoalesceFetches.WithLabelValues(policy.KindBlob, "ok").Inc()
	b.progress(0, true, nil)
}

// reserve books size bytes of the spool for b, dropping expired entries
// if that makes room.
func (c *Coalescer) reserve(b *blob, size int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.used+size > c.cfg.MaxBytes {
		now := time.Now()
		for _, o := range c.blobs {
			if o != b && o.expired(now) {
				c.dropLocked(o)
			}
		}
	}
	if c.used+size > c.cfg.MaxBytes {
		return fmt.Errorf("%w: %d of %d bytes used, blob is %d", errSpoolFull, c.used, c.cfg.MaxBytes, size)
	}
	c.addUsedLocked(size)
	b.mu.Lock()
	b.size = size
	b.mu.Unlock()
	return nil
}

func (c *Coalescer) drop(b *blob) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dropLocked(b)
}

// dropLocked removes b from the spool (c.mu held). Readers with the file
// open keep reading it; it is unlinked now.
func (c *Coalescer) dropLocked(b *blob) {
	if c.blobs[b.d] == b {
		delete(c.blobs, b.d)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped {
		return
	}
	b.dropped = true
	c.addUsedLocked(-b.size)
	_ = os.Remove(b.path)
}

func (c *Coalescer) openReader(b *blob) (*os.File, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.err != nil || b.dropped {
		return nil, fmt.Errorf("blob %s: fetch failed: %w", b.d, store.ErrNotFound)
	}
	f, err := os.Open(b.path)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %v: %w", b.d, err, store.ErrNotFound)
	}
	b.readers++
	return f, nil
}

func (c *Coalescer) closeReader(b *blob, f *os.File) {
	_ = f.Close()
	b.mu.Lock()
	b.readers--
	if b.done && b.expires.Before(time.Now().Add(c.cfg.TTL/2)) {
		b.expires = time.Now().Add(c.cfg.TTL / 2) // a late reader keeps it a little
	}
	b.mu.Unlock()
}

// follow writes the requested window of b to w as the fetch appends it.
// The last byte of the blob is written only once the whole blob matched
// its digest, so no response completes with wrong bytes; a failed fetch
// aborts the response (registry.ErrAborted).
func (c *Coalescer) follow(ctx context.Context, w http.ResponseWriter, r *http.Request, b *blob, f *os.File) error {
	size := b.size
	rng, partial, err := oci.ParseRange(r.Header.Get("Range"), size)
	if err != nil {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", size))
		oci.WriteError(w, r, err)
		return nil
	}
	if !partial {
		rng = oci.ByteRange{Start: 0, Length: size}
	}
	h := w.Header()
	h.Set("Content-Type", oci.MediaTypeOctetStream)
	h.Set("Docker-Content-Digest", b.d.String())
	h.Set("Etag", `"`+b.d.String()+`"`)
	h.Set("Accept-Ranges", "bytes")
	h.Set("Content-Length", strconv.FormatInt(rng.Length, 10))
	status := http.StatusOK
	if partial {
		h.Set("Content-Range", rng.ContentRange(size))
		status = http.StatusPartialContent
	}
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(registry.TransferBudget(size)))
	w.WriteHeader(status)
	if r.Method == http.MethodHead || rng.Length == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, registry.TransferBudget(size))
	defer cancel()
	off, end := rng.Start, rng.Start+rng.Length
	buf := make([]byte, 256<<10)
	for off < end {
		b.mu.Lock()
		avail, done, ferr, ch := b.written, b.done, b.err, b.notify
		b.mu.Unlock()
		if ferr != nil {
			return fmt.Errorf("blob %s: upstream fetch failed: %v: %w", b.d, ferr, registry.ErrAborted)
		}
		if !done {
			avail = min(avail, size-1) // the last byte waits for the digest check
		}
		if off >= avail {
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return fmt.Errorf("blob %s: %w", b.d, registry.ErrAborted)
			}
		}
		n, err := f.ReadAt(buf[:min(int64(len(buf)), min(avail, end)-off)], off)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return fmt.Errorf("blob %s: client: %w", b.d, registry.ErrAborted)
			}
			off += int64(n)
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("blob %s: spool: %v: %w", b.d, err, registry.ErrAborted)
		}
	}
	return nil
}
