package registry_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// slowStore is an oci-layout store whose blob reads through ReadAt (what
// the verification hash uses) each take delay, as on a cold network disk;
// the file itself (sendfile) is not slowed. It counts those reads.
type slowStore struct {
	*ocidir.Store
	delay time.Duration
	reads atomic.Int64
}

type slowContent struct {
	*store.File
	s *slowStore
}

func (s *slowStore) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	c, err := s.Store.Open(ctx, d)
	if err != nil {
		return nil, err
	}
	return slowContent{File: c.(*store.File), s: s}, nil
}

func (c slowContent) ReadAt(p []byte, off int64) (int, error) {
	c.s.reads.Add(1)
	time.Sleep(c.s.delay)
	return c.File.ReadAt(p, off)
}

// peerGet GETs path as a peer with a client that, like the mirror's,
// gives up when response headers take over 5 s; it returns the status,
// the time to headers, the body and the error reading it.
func peerGet(ctx context.Context, url string) (int, time.Duration, []byte, error) {
	client := &http.Client{Transport: &http.Transport{ResponseHeaderTimeout: 5 * time.Second}}
	defer client.CloseIdleConnections()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	req.Header.Set(registry.PeerHeader, "peer-1")
	start := time.Now()
	resp, err := client.Do(req)
	if err != nil {
		return 0, time.Since(start), nil, err
	}
	head := time.Since(start)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, head, b, err
}

// TestServer_PeerBlobVerifiedWhileStreaming: a blob whose verification
// hash takes over 5 s (slowed reads) is still served to peers: headers at
// once, bytes as the hash reads them, the last byte once the digest
// matched. Concurrent requests share one hash, which survives a request
// that gives up; later requests get the verified file straight away.
func TestServer_PeerBlobVerifiedWhileStreaming(t *testing.T) {
	t.Parallel()
	img, dir := layoutImage(t, "docker.io/library/cold:1.0", 41, 6<<20)
	layer := img.Largest()
	// 24 reads of 256 KiB at 250 ms: the hash takes 6 s.
	st := &slowStore{Store: dir, delay: 250 * time.Millisecond}
	srv := httptest.NewServer(registry.New(st))
	defer srv.Close()
	url := srv.URL + "/v2/library/cold/blobs/" + layer.Digest.String()

	// A first request gives up after its headers: the hash goes on.
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	status, head, _, _ := peerGet(ctx, url)
	cancel()
	if status != http.StatusOK || head > time.Second {
		t.Fatalf("first request: status %d after %v", status, head)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, head, body, err := peerGet(t.Context(), url)
			if err != nil || status != http.StatusOK || digest.FromBytes(body) != layer.Digest {
				t.Errorf("status %d, %d bytes, err %v: want the layer", status, len(body), err)
			}
			if head > time.Second {
				t.Errorf("headers after %v, want them at once", head)
			}
		}()
	}
	wg.Wait()
	if took := time.Since(start) + 700*time.Millisecond; took < 5*time.Second {
		t.Fatalf("the hash took %v; the test wants one over 5 s", took)
	}
	hashReads := st.reads.Load()
	if want := (layer.Size + 256<<10 - 1) / (256 << 10); hashReads != want {
		t.Fatalf("%d hash reads, want %d: one hash shared by every request", hashReads, want)
	}
	// Verified: served at once, without hashing again.
	start = time.Now()
	if status, _, body, err := peerGet(t.Context(), url); err != nil || status != http.StatusOK || digest.FromBytes(body) != layer.Digest {
		t.Fatalf("after verification: status %d, err %v", status, err)
	}
	if took := time.Since(start); took > time.Second || st.reads.Load() != hashReads {
		t.Fatalf("verified blob took %v and %d more reads", took, st.reads.Load()-hashReads)
	}
}

// TestServer_PeerBlobCorruptIsAborted: a blob file that does not match its
// digest is never completed to a peer: the response streaming behind a
// slow hash is aborted before its last byte, and later requests get a 404
// (so does a first request when the hash ends within the grace).
func TestServer_PeerBlobCorruptIsAborted(t *testing.T) {
	t.Parallel()
	img, dir := layoutImage(t, "docker.io/library/rot:1.0", 42, 2<<20)
	layer := img.Largest()
	path, _ := dir.BlobPath(layer.Digest)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("bit rot"), layer.Size-100); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// 8 reads of 50 ms: the hash outlasts the grace, so the body streams.
	st := &slowStore{Store: dir, delay: 50 * time.Millisecond}
	srv := httptest.NewServer(registry.New(st))
	defer srv.Close()
	url := srv.URL + "/v2/library/rot/blobs/" + layer.Digest.String()
	status, _, body, err := peerGet(t.Context(), url)
	if status != http.StatusOK || int64(len(body)) >= layer.Size || !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("corrupt blob: status %d, %d bytes, err %v; want an aborted body", status, len(body), err)
	}
	status, _, _, _ = peerGet(t.Context(), url)
	if status != http.StatusNotFound {
		t.Fatalf("after a failed verification: status %d, want 404", status)
	}
}

// layoutImage builds an image of the given layer sizes and writes it to a
// fresh oci-layout store (blob files: peers' requests are verified).
func layoutImage(t *testing.T, name string, seed uint64, sizes ...int64) (*testimage.Image, *ocidir.Store) {
	t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: name, LayerSizes: sizes, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	dir, err := ocidir.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteLayout(t.Context(), dir); err != nil {
		t.Fatal(err)
	}
	return img, dir
}
