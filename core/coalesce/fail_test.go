package coalesce_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/upstream"
)

// TestCoalescer_ServePeer_UpstreamFailsMidBlob: an upstream that sends
// wrong bytes or dies mid-body (which a real registry cannot be made to
// do, hence the fake) never gives a requester a complete response; the
// entry is dropped so the next request fetches again.
func TestCoalescer_ServePeer_UpstreamFailsMidBlob(t *testing.T) {
	t.Parallel()
	good := bytes.Repeat([]byte("sluice "), 300<<10) // 2.1 MB
	d := digest.FromBytes(good)
	tests := []struct {
		name  string
		serve func(w http.ResponseWriter)
	}{
		{"wrong bytes", func(w http.ResponseWriter) {
			// Chunked, and the end of the body comes late: every byte is
			// there well before the fetch can know they are wrong.
			bad := bytes.Clone(good)
			bad[len(bad)-1] ^= 1
			_, _ = w.Write(bad)
			w.(http.Flusher).Flush()
			time.Sleep(300 * time.Millisecond)
		}},
		{"connection dropped", func(w http.ResponseWriter) {
			_, _ = w.Write(good[:len(good)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var gets atomic.Int32
			up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/"+repo+"/blobs/"+d.String() {
					http.NotFound(w, r)
					return
				}
				if r.Method == http.MethodHead {
					w.Header().Set("Content-Length", strconv.Itoa(len(good)))
				}
				w.Header().Set("Docker-Content-Digest", d.String())
				w.WriteHeader(http.StatusOK)
				if r.Method == http.MethodGet {
					gets.Add(1)
					tt.serve(w)
				}
			}))
			t.Cleanup(up.Close)
			spool := filepath.Join(t.TempDir(), "spool")
			c, err := coalesce.New(upstream.New(named(t, up.Listener.Addr().String())), coalesce.Config{Dir: spool, MaxBytes: 64 << 20, TTL: time.Minute})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			srv := httptest.NewServer(registry.New(memory.New(), registry.WithCoalescer(c)))
			t.Cleanup(srv.Close)
			var before int32
			for round := 1; round <= 2; round++ {
				req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet,
					fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, repo, d, up.Listener.Addr()), nil)
				req.Header.Set(registry.PeerHeader, "node-x")
				req.Header.Set(oci.CoalesceHeader, "1")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, rerr := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && rerr == nil {
					t.Fatalf("round %d: a complete %d-byte response (digest %s) from a failed upstream fetch", round, len(b), digest.FromBytes(b))
				}
				if int64(len(b)) >= int64(len(good)) {
					t.Fatalf("round %d: %d bytes sent of %d", round, len(b), len(good))
				}
				waitEmpty(t, spool)
				// containerd's fetcher may retry a dropped body itself.
				if n := gets.Load(); n <= before {
					t.Fatalf("round %d: no new upstream GET; a failed entry must be fetched again", round)
				}
				before = gets.Load()
			}
		})
	}
}

// TestCoalescer_ServePeer_SlowUpstreamIs404: an upstream slower than the
// first-byte bound costs the requester a quick 404 (its containerd goes
// upstream itself); the fetch goes on for later requesters.
func TestCoalescer_ServePeer_SlowUpstreamIs404(t *testing.T) {
	t.Parallel()
	good := []byte("slow content")
	d := digest.FromBytes(good)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v2/"+repo+"/blobs/"+d.String() {
			http.NotFound(w, r)
			return
		}
		select {
		case <-time.After(6 * time.Second): // far past the first-byte bound, even on a loaded machine
		case <-r.Context().Done():
			return
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(good)))
		w.WriteHeader(http.StatusOK)
		if r.Method == http.MethodGet {
			_, _ = w.Write(good)
		}
	}))
	t.Cleanup(up.Close)
	c, err := coalesce.New(upstream.New(named(t, up.Listener.Addr().String())), coalesce.Config{Dir: filepath.Join(t.TempDir(), "spool"), MaxBytes: 1 << 20, TTL: time.Minute, FirstByte: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(registry.New(memory.New(), registry.WithCoalescer(c)))
	t.Cleanup(srv.Close)
	get := func() (int, []byte, time.Duration) {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, fmt.Sprintf("%s/v2/%s/blobs/%s?ns=%s", srv.URL, repo, d, up.Listener.Addr()), nil)
		req.Header.Set(registry.PeerHeader, "node-x")
		req.Header.Set(oci.CoalesceHeader, "1")
		start := time.Now()
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b, time.Since(start)
	}
	if code, _, took := get(); code != http.StatusNotFound || took > 4*time.Second {
		t.Fatalf("slow upstream: %d after %v, want a 404 within the first-byte bound", code, took)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		code, b, _ := get()
		if code == http.StatusOK {
			if !bytes.Equal(b, good) {
				t.Fatalf("later request got %q", b)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the fetch started by the first request never served a later one")
		}
	}
}
