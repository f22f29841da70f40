package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

func TestClient_Resolve(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t, upstreamtest.Options{})
	v1, v2 := image(t, 1, 1024), image(t, 2, 2048)
	push(t, up, "1.0", v1)
	push(t, up, "stable", v1)
	c := upstream.New(named(t, up.Host))

	// The tag moves between two resolves: the second must see it.
	d, err := c.Resolve(t.Context(), ref(up.Host, "stable", ""))
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest != v1.Target.Digest || d.MediaType != ocispec.MediaTypeImageManifest || d.Size != v1.Target.Size {
		t.Fatalf("stable = %+v, want %+v", d, v1.Target)
	}
	push(t, up, "stable", v2)
	before := up.Counter.Path("/v2/" + repo + "/manifests/stable").Requests

	tests := []struct {
		name string
		tag  string
		dgst digest.Digest
		want ocispec.Descriptor
		err  error
	}{
		{name: "moved tag resolves fresh", tag: "stable", want: v2.Target},
		{name: "other tag", tag: "1.0", want: v1.Target},
		{name: "digest", dgst: v1.Target.Digest, want: v1.Target},
		{name: "tag and digest", tag: "stable", dgst: v2.Target.Digest, want: v2.Target},
		{name: "missing tag", tag: "nope", err: store.ErrNotFound},
		{name: "missing digest", dgst: digest.FromString("nope"), err: store.ErrNotFound},
		{name: "no tag, no digest", err: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := c.Resolve(t.Context(), ref(up.Host, tt.tag, tt.dgst))
			checkErr(t, err, tt.err)
			if tt.err == nil && (got.Digest != tt.want.Digest || got.Size != tt.want.Size || got.MediaType != tt.want.MediaType) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
	// Every resolve of the tag reached the upstream: nothing was cached.
	if n := up.Counter.Path("/v2/"+repo+"/manifests/stable").Requests - before; n != 1 {
		t.Fatalf("resolving stable once after the move sent %d requests, want 1", n)
	}
	if _, err := c.Resolve(t.Context(), ref("127.0.0.1:1", "x", "")); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Fatalf("unreachable registry: %v, want a connection error", err)
	}
}

func TestClient_FetchManifest(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t, upstreamtest.Options{InMemory: true})
	idx, err := testimage.Build(testimage.Spec{Name: "example.com/app:multi", Platforms: []string{"linux/amd64", "linux/arm64"}, LayerSizes: []int64{512}, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	push(t, up, "multi", idx)
	single := image(t, 4, 256)
	push(t, up, "single", single)
	c := upstream.New(named(t, up.Host))

	tests := []struct {
		name string
		tag  string
		dgst digest.Digest
		want ocispec.Descriptor
		err  error
	}{
		{name: "index by tag", tag: "multi", want: idx.Target},
		{name: "child manifest by digest", dgst: idx.Manifests[1].Digest, want: idx.Manifests[1]},
		{name: "manifest by tag", tag: "single", want: single.Target},
		{name: "a layer is not a manifest", dgst: single.Layers[0].Digest, err: store.ErrNotFound},
		{name: "missing", tag: "gone", err: store.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, desc, err := c.FetchManifest(t.Context(), ref(up.Host, tt.tag, tt.dgst))
			checkErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if desc.Digest != tt.want.Digest || desc.MediaType != tt.want.MediaType {
				t.Fatalf("desc %+v, want %+v", desc, tt.want)
			}
			all := map[digest.Digest][]byte{}
			for d, v := range idx.Blobs {
				all[d] = v
			}
			for d, v := range single.Blobs {
				all[d] = v
			}
			if !bytes.Equal(b, all[tt.want.Digest]) {
				t.Fatalf("manifest bytes differ from the pushed ones")
			}
		})
	}
}

func TestClient_Blob(t *testing.T) {
	t.Parallel()
	up := upstreamtest.Start(t, upstreamtest.Options{})
	// The large layer is over containerd's 4 MiB manifest limit: a digest
	// of unknown size must be asked on the blobs path, not rejected as an
	// oversized manifest on the manifests path.
	img := image(t, 5, 5<<20, 10, 0)
	push(t, up, "1", img)
	c := upstream.New(named(t, up.Host))
	big := img.Largest()
	cfg := ocispec.Descriptor{}
	for d, mt := range img.Types {
		if mt == ocispec.MediaTypeImageConfig {
			cfg = ocispec.Descriptor{Digest: d, Size: int64(len(img.Blobs[d]))}
		}
	}

	tests := []struct {
		name string
		dgst digest.Digest
		size int64
		want []byte
		err  error
	}{
		{name: "5 MiB layer, size known", dgst: big.Digest, size: big.Size, want: img.Blobs[big.Digest]},
		{name: "5 MiB layer, size asked", dgst: big.Digest, size: -1, want: img.Blobs[big.Digest]},
		{name: "config", dgst: cfg.Digest, size: -1, want: img.Blobs[cfg.Digest]},
		{name: "missing, size known", dgst: digest.FromString("missing"), size: 7, err: store.ErrNotFound},
		{name: "missing, size asked", dgst: digest.FromString("missing"), size: -1, err: store.ErrNotFound},
		{name: "invalid digest", dgst: "sha256:xyz", size: -1, err: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readBlob(t, c, ref(up.Host, "", ""), tt.dgst, tt.size)
			checkErr(t, err, tt.err)
			if tt.err == nil && !bytes.Equal(got, tt.want) {
				t.Fatalf("read %d bytes that differ from the %d pushed", len(got), len(tt.want))
			}
		})
	}
	if s := up.Counter.Kind(upstreamtest.KindBlob); s.Bytes < 2*big.Size || s.Bytes > 3*big.Size {
		t.Fatalf("upstream served %d blob bytes for two reads of %d", s.Bytes, big.Size)
	}
}

// TestClient_Blob_Mismatch serves wrong bytes for a digest, which a real
// registry never does; a read must end in ErrDigestMismatch, never io.EOF.
func TestClient_Blob_Mismatch(t *testing.T) {
	t.Parallel()
	good := []byte("the right content")
	d := digest.FromBytes(good)
	tests := []struct {
		name string
		body []byte
		size int64
	}{
		{name: "same length, other bytes", body: []byte("the wrong content"), size: int64(len(good))},
		{name: "short", body: good[:5], size: int64(len(good))},
		{name: "size asked, other bytes", body: []byte("the wrong content"), size: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/v2/"+repo+"/blobs/"+d.String() {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Length", strconv.Itoa(len(good)))
				w.Header().Set("Docker-Content-Digest", d.String())
				w.WriteHeader(http.StatusOK)
				if r.Method == http.MethodGet {
					_, _ = w.Write(tt.body)
				}
			}))
			defer srv.Close()
			c := upstream.New(named(t, srv.Listener.Addr().String()))
			_, err := readBlob(t, c, ref(srv.Listener.Addr().String(), "", ""), d, tt.size)
			if err == nil {
				t.Fatal("read succeeded")
			}
			if tt.name != "short" && !errors.Is(err, upstream.ErrDigestMismatch) {
				t.Fatalf("error %v, want ErrDigestMismatch", err)
			}
		})
	}
}

// TestClient_Blob_Cancel: an upstream that stalls mid-body is left when
// the stream's context ends; the read fails, it neither hangs nor ends in a
// clean io.EOF.
func TestClient_Blob_Cancel(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("sluice"), 20000)
	d := digest.FromBytes(body)
	half := len(body) / 2
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body[:half])
		http.NewResponseController(w).Flush()
		<-r.Context().Done() // stall until the client goes away
	}))
	defer srv.Close()
	ctx, cancel := context.WithCancel(t.Context())
	b, err := upstream.New(named(t, srv.Listener.Addr().String())).Blob(ctx, ref(srv.Listener.Addr().String(), "", ""), d, int64(len(body)))
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := io.ReadFull(b, make([]byte, half)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, b)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("read ended with %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("read still blocked 10 s after cancel")
	}
}
