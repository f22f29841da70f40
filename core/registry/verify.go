package registry

import (
	"context"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
)

// verifyCache remembers which blob files were hashed and matched, keyed by
// the file's identity and change time, so each file version is hashed
// once. A write to the file (which changes ctime) forces a new check.
type verifyCache struct {
	mu  sync.Mutex
	max int
	m   map[digest.Digest]fileStamp
}

type fileStamp struct {
	dev, ino uint64
	size     int64
	ctime    time.Time
	mtime    time.Time
}

func newVerifyCache(max int) *verifyCache {
	return &verifyCache{max: max, m: map[digest.Digest]fileStamp{}}
}

// check reports whether content matches d. Content that is not a file
// (the containerd content API) is trusted to the backend, which verifies
// on write.
func (v *verifyCache) check(ctx context.Context, d digest.Digest, c store.Content) (bool, error) {
	f, ok := c.(store.Filer)
	if !ok {
		return true, nil
	}
	st, err := stampOf(f.OSFile())
	if err != nil {
		return false, err
	}
	v.mu.Lock()
	cached, hit := v.m[d]
	v.mu.Unlock()
	if hit && cached == st {
		return true, nil
	}
	if !d.Algorithm().Available() {
		return false, nil
	}
	h := d.Algorithm().Hash()
	if _, err := io.Copy(h, io.NewSectionReader(ctxReaderAt{ctx, c}, 0, c.Size())); err != nil {
		return false, err
	}
	if digest.NewDigest(d.Algorithm(), h) != d {
		v.mu.Lock()
		delete(v.m, d)
		v.mu.Unlock()
		return false, nil
	}
	v.mu.Lock()
	if len(v.m) >= v.max {
		for k := range v.m { // drop an arbitrary entry; a miss only costs a re-hash
			delete(v.m, k)
			break
		}
	}
	v.m[d] = st
	v.mu.Unlock()
	return true, nil
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

// ctxReaderAt stops a long hash when the request is cancelled.
type ctxReaderAt struct {
	ctx context.Context
	r   io.ReaderAt
}

func (c ctxReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.ReadAt(p, off)
}
