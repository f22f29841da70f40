package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// verifyCache remembers the verdict on each blob file version (identity,
// size, change times) and runs the hash of a version not yet judged: once
// at a time whoever asks, in the background, so that it survives the
// request that started it. Requests stream the file behind the hash's
// progress (see flight) instead of waiting for it. A write to the file
// (which changes ctime) makes it a new version, hashed again.
//
// At most slots hashes run at once: a new one asked for while every slot
// is busy waits for a slot within the request's grace and is then refused
// (errHashBusy) rather than queued further, so a peer sweeping the node's
// digests, or many abandoned requests, cannot start a whole-file read per
// blob, while the burst of a rollout's first pulls (dozens of small blobs
// asked at once, each hashed in microseconds) is served.
type verifyCache struct {
	mu      sync.Mutex
	max     int
	slots   int
	running int
	m       map[digest.Digest]verdict
	flights map[flightKey]*flight
	waiters []*slotWaiter // requests in line for a slot, longest first
}

type verdict struct {
	stamp fileStamp
	ok    bool
}

type flightKey struct {
	d     digest.Digest
	stamp fileStamp
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	ctime    time.Time
	mtime    time.Time
}

// verifyGrace is how long a peer's GET waits for the verdict on a blob
// file not yet judged before it streams behind the hash instead: long
// enough for most blobs on a warm disk (sha256 hashes about 20 MiB in
// that time here), far below the requester's 5 s header timeout.
const verifyGrace = 100 * time.Millisecond

// hashChunk is how much the background hash reads at a time, and so how
// far ahead of a waiting request it publishes progress.
const hashChunk = 256 << 10

// verdictCacheSize is how many blob verdicts a node remembers: enough for
// the blobs of a large node (a few thousand images), at about 200 bytes an
// entry (the digest string, the file stamp, the map slot), so at most
// ~13 MiB. An entry evicted costs one more hash of that blob.
const verdictCacheSize = 65536

// defaultHashSlots is how many background hashes run at once by default:
// a few whole-file reads keep a disk busy; more only make each slower.
const defaultHashSlots = 4

func newVerifyCache(max int) *verifyCache {
	return &verifyCache{max: max, slots: defaultHashSlots, m: map[digest.Digest]verdict{}, flights: map[flightKey]*flight{}}
}

// errFileChanged ends a hash whose file is no longer the version asked for.
var errFileChanged = errors.New("blob file changed while being verified")

// errHashBusy is the verdict of a hash refused because every slot was
// busy: nothing was read, the blob is not judged.
var errHashBusy = errors.New("every background hash slot is busy")

// state returns the verdict on version st of d when known; otherwise the
// hash of that version in flight, started with open (which must open the
// blob afresh: the hash outlives the caller's handle) unless one runs.
// When none runs and every slot is busy, it waits in line for a slot until
// ctx is done (a slot freed goes to the longest waiter, and wakes only
// it); then the flight returned is already finished with errHashBusy.
func (v *verifyCache) state(ctx context.Context, d digest.Digest, st fileStamp, open func() (store.Content, error)) (known, ok bool, f *flight) {
	v.mu.Lock()
	if known, ok, f, done := v.lookup(d, st); done {
		v.mu.Unlock()
		return known, ok, f
	}
	if v.running < v.slots {
		v.running++
		f = v.start(d, st, open)
		v.mu.Unlock()
		return false, false, f
	}
	w := v.enqueue(ctx)
	v.mu.Unlock()
	if w == nil || !v.await(ctx, w) {
		f = newFlight(st.size)
		f.finish(false, fmt.Errorf("verify %s: %w", d, errHashBusy))
		return false, false, f
	}
	// This request holds a slot: another may have judged or started the
	// same version meanwhile.
	v.mu.Lock()
	defer v.mu.Unlock()
	if known, ok, f, done := v.lookup(d, st); done {
		v.release()
		return known, ok, f
	}
	return false, false, v.start(d, st, open)
}

// lookup returns the verdict on version st of d, or the hash of it in
// flight (done), or nothing; v.mu is held.
func (v *verifyCache) lookup(d digest.Digest, st fileStamp) (known, ok bool, f *flight, done bool) {
	if e, hit := v.m[d]; hit && e.stamp == st {
		return true, e.ok, nil, true
	}
	if f := v.flights[flightKey{d, st}]; f != nil {
		return false, false, f, true
	}
	return false, false, nil, false
}

// start runs the hash of version st of d in a slot the caller holds;
// v.mu is held.
func (v *verifyCache) start(d digest.Digest, st fileStamp, open func() (store.Content, error)) *flight {
	key := flightKey{d, st}
	f := newFlight(st.size)
	v.flights[key] = f
	go v.run(key, f, open)
	return f
}

// slotWaiter is a request in line for a hash slot: ready is closed when a
// slot is handed to it (granted, under v.mu).
type slotWaiter struct {
	ready   chan struct{}
	granted bool
}

// enqueue puts a waiter in line, or returns nil when ctx is already done
// (a HEAD, a request past its grace); v.mu is held.
func (v *verifyCache) enqueue(ctx context.Context) *slotWaiter {
	if ctx.Err() != nil {
		return nil
	}
	w := &slotWaiter{ready: make(chan struct{})}
	v.waiters = append(v.waiters, w)
	return w
}

// await waits until w is handed a slot (true) or ctx is done (false: w
// left the line, and a slot handed to it meanwhile is passed on).
func (v *verifyCache) await(ctx context.Context, w *slotWaiter) bool {
	select {
	case <-w.ready:
		return true
	case <-ctx.Done():
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if w.granted {
		v.release()
		return false
	}
	if i := slices.Index(v.waiters, w); i >= 0 {
		v.waiters = slices.Delete(v.waiters, i, i+1)
	}
	return false
}

// release frees a slot: to the longest waiter when one is in line, else
// back to the pool; v.mu is held.
func (v *verifyCache) release() {
	if len(v.waiters) == 0 {
		v.running--
		return
	}
	w := v.waiters[0]
	v.waiters = slices.Delete(v.waiters, 0, 1)
	w.granted = true
	close(w.ready)
}

// run hashes one file version and records the verdict. It is detached
// from every request on purpose.
func (v *verifyCache) run(key flightKey, f *flight, open func() (store.Content, error)) {
	ok, err := v.hash(key, f, open)
	v.mu.Lock()
	delete(v.flights, key)
	v.release()
	if err == nil {
		if _, had := v.m[key.d]; !had && len(v.m) >= v.max {
			for k := range v.m { // drop an arbitrary entry; a miss only costs a re-hash
				delete(v.m, k)
				break
			}
		}
		v.m[key.d] = verdict{stamp: key.stamp, ok: ok}
	}
	v.mu.Unlock()
	f.finish(ok, err)
}

func (v *verifyCache) hash(key flightKey, f *flight, open func() (store.Content, error)) (bool, error) {
	if !key.d.Algorithm().Available() {
		return false, nil
	}
	c, err := open()
	if err != nil {
		return false, err
	}
	defer c.Close()
	fl, isFile := c.(store.Filer)
	if !isFile {
		return false, fmt.Errorf("verify %s: %w", key.d, errFileChanged)
	}
	if st, err := stampOf(fl.OSFile()); err != nil || st != key.stamp {
		return false, fmt.Errorf("verify %s: %w", key.d, errFileChanged)
	}
	h := key.d.Algorithm().Hash()
	buf := make([]byte, hashChunk)
	var off int64
	for off < key.stamp.size {
		n, err := c.ReadAt(buf[:min(int64(len(buf)), key.stamp.size-off)], off)
		h.Write(buf[:n])
		off += int64(n)
		f.advance(off)
		if err != nil && !(errors.Is(err, io.EOF) && off == key.stamp.size) {
			return false, fmt.Errorf("verify %s: %w", key.d, err)
		}
	}
	return digest.NewDigest(key.d.Algorithm(), h) == key.d, nil
}

// flight is a hash in progress: how many bytes from the start it has
// read, then its verdict. Waiters are woken by closing changed.
type flight struct {
	mu      sync.Mutex
	size    int64
	hashed  int64
	done    bool
	ok      bool
	err     error
	changed chan struct{}
}

func newFlight(size int64) *flight { return &flight{size: size, changed: make(chan struct{})} }

func (f *flight) advance(hashed int64) {
	f.mu.Lock()
	f.hashed = hashed
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
}

func (f *flight) finish(ok bool, err error) {
	f.mu.Lock()
	f.done, f.ok, f.err = true, ok, err
	close(f.changed)
	f.mu.Unlock()
}

// wait returns once at least want bytes are hashed or the verdict is in
// (want past the size waits for the verdict), or ctx is done.
func (f *flight) wait(ctx context.Context, want int64) (hashed int64, done, ok bool, err error) {
	for {
		f.mu.Lock()
		hashed, done, ok, err, ch := f.hashed, f.done, f.ok, f.err, f.changed
		f.mu.Unlock()
		if done || hashed >= want {
			return hashed, done, ok, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return hashed, false, false, ctx.Err()
		}
	}
}

// errVerifyFailed aborts a response whose blob did not match its digest.
var errVerifyFailed = errors.New("blob does not match its digest")

// copyBehindHash writes the window rng of a blob file that is being
// verified: only bytes the hash has already read, and the window's last
// byte only after the digest matched, so a client never completes a
// corrupt blob. The first bytes go out as soon as the hash read them.
func copyBehindHash(ctx context.Context, w io.Writer, content store.Content, rng oci.ByteRange, f *flight) (int64, error) {
	end := rng.Start + rng.Length
	var sent int64
	for pos := rng.Start; pos < end; {
		want := pos + 1
		if want == end {
			want = math.MaxInt64 // the last byte waits for the verdict
		}
		hashed, done, ok, err := f.wait(ctx, want)
		switch {
		case err != nil:
			return sent, err
		case done && !ok:
			return sent, errVerifyFailed
		}
		limit := end
		if !done {
			limit = min(hashed, end-1)
		}
		n, err := copyContent(w, content, oci.ByteRange{Start: pos, Length: limit - pos})
		sent += n
		if err != nil {
			return sent, err
		}
		pos = limit
	}
	return sent, nil
}

func stampOf(f *os.File) (fileStamp, error) {
	fi, err := f.Stat()
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.dev, st.ino = uint64(sys.Dev), sys.Ino
		st.ctime = time.Unix(sys.Ctim.Sec, sys.Ctim.Nsec)
	}
	return st, nil
}
