package registry

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
)

// slowFile is a blob file whose reads take a while (a cold disk) and are
// counted while they run.
type slowFile struct {
	*store.File
	running, peak *atomic.Int32
}

func (s slowFile) ReadAt(p []byte, off int64) (int, error) {
	n := s.running.Add(1)
	for {
		pk := s.peak.Load()
		if n <= pk || s.peak.CompareAndSwap(pk, n) {
			break
		}
	}
	defer s.running.Add(-1)
	time.Sleep(20 * time.Millisecond)
	return s.File.ReadAt(p, off)
}

// TestVerifyCache_BackgroundHashesBounded: requests for many distinct
// unverified blobs that are abandoned at once (hedge losers, a peer
// sweeping the node's digests) leave their hashes running; the node must
// not read every blob file at once (N × 256 KiB buffers, N streams on a
// cold disk).
func TestVerifyCache_BackgroundHashesBounded(t *testing.T) {
	dir := t.TempDir()
	v := newVerifyCache(4096)
	var running, peak atomic.Int32
	const blobs = 64
	var wg sync.WaitGroup
	for i := range blobs {
		b := []byte(fmt.Sprintf("blob %d %s", i, make([]byte, 1<<20)))
		d := digest.FromBytes(b)
		p := filepath.Join(dir, d.Encoded())
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		open := func() (store.Content, error) {
			f, err := store.OpenFile(p, d)
			if err != nil {
				return nil, err
			}
			return slowFile{File: f, running: &running, peak: &peak}, nil
		}
		f, err := store.OpenFile(p, d)
		if err != nil {
			t.Fatal(err)
		}
		st, err := stampOf(f.OSFile())
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		_, _, fl := v.state(t.Context(), d, st, open) // the request that asked is gone
		wg.Add(1)
		go func() { defer wg.Done(); _, _, _, _ = fl.wait(t.Context(), 1<<62) }()
	}
	wg.Wait()
	if got, limit := peak.Load(), int32(8); got > limit {
		t.Fatalf("%d blob files read at once by background hashes, want at most %d", got, limit)
	}
}
