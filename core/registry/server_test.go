package registry_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/internal/testimage"
)

func newServer(t *testing.T) (*httptest.Server, *testimage.Image) {
	t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/app:1.0", Platforms: []string{"linux/amd64", "linux/arm64"}, LayerSizes: []int64{4096, 100}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	if err := img.AddTo(st, "docker.io"); err != nil {
		t.Fatal(err)
	}
	other, err := testimage.Build(testimage.Spec{Name: "ghcr.io/org/tool:v2", LayerSizes: []int64{10}, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.AddTo(st, "ghcr.io"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(registry.New(st))
	t.Cleanup(srv.Close)
	return srv, img
}

func TestServer_API(t *testing.T) {
	t.Parallel()
	srv, img := newServer(t)
	layer := img.Layers[0]
	idx := img.Target
	tests := []struct {
		name, method, path string
		header             map[string]string
		status             int
		code               string // OCI error code
		wantHeader         map[string]string
		wantBody           string
	}{
		{name: "base", method: "GET", path: "/v2/", status: 200, wantBody: "{}"},
		{name: "manifest by tag", method: "GET", path: "/v2/library/app/manifests/1.0?ns=docker.io", status: 200,
			wantHeader: map[string]string{"Content-Type": idx.MediaType, "Docker-Content-Digest": idx.Digest.String(), "Content-Length": fmt.Sprint(idx.Size)},
			wantBody:   string(img.Blobs[idx.Digest])},
		{name: "manifest by tag, default registry, library/ added", method: "GET", path: "/v2/app/manifests/1.0", status: 200,
			wantHeader: map[string]string{"Docker-Content-Digest": idx.Digest.String()}},
		{name: "manifest by tag, index.docker.io alias", method: "HEAD", path: "/v2/library/app/manifests/1.0?ns=index.docker.io", status: 200,
			wantHeader: map[string]string{"Docker-Content-Digest": idx.Digest.String(), "Content-Length": fmt.Sprint(idx.Size)}, wantBody: ""},
		{name: "manifest by digest", method: "GET", path: "/v2/library/app/manifests/" + img.Manifests[1].Digest.String(), status: 200,
			wantHeader: map[string]string{"Content-Type": "application/vnd.oci.image.manifest.v1+json", "Etag": `"` + img.Manifests[1].Digest.String() + `"`}},
		{name: "other registry by ns", method: "GET", path: "/v2/org/tool/manifests/v2?ns=ghcr.io", status: 200},
		{name: "other registry without ns", method: "GET", path: "/v2/org/tool/manifests/v2", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "unknown tag", method: "GET", path: "/v2/library/app/manifests/9.9", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "unknown tag HEAD", method: "HEAD", path: "/v2/library/app/manifests/9.9", status: 404, wantBody: ""},
		{name: "blob", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), status: 200,
			wantHeader: map[string]string{"Content-Length": fmt.Sprint(layer.Size), "Docker-Content-Digest": layer.Digest.String(), "Accept-Ranges": "bytes"},
			wantBody:   string(img.Blobs[layer.Digest])},
		{name: "blob HEAD", method: "HEAD", path: "/v2/library/app/blobs/" + layer.Digest.String(), status: 200,
			wantHeader: map[string]string{"Content-Length": fmt.Sprint(layer.Size)}, wantBody: ""},
		{name: "blob range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": "bytes=10-19"}, status: 206,
			wantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes 10-19/%d", layer.Size), "Content-Length": "10"},
			wantBody:   string(img.Blobs[layer.Digest][10:20])},
		{name: "blob suffix range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": "bytes=-5"}, status: 206,
			wantBody: string(img.Blobs[layer.Digest][layer.Size-5:])},
		{name: "blob open range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", layer.Size-3)}, status: 206,
			wantBody: string(img.Blobs[layer.Digest][layer.Size-3:])},
		{name: "range past end", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": fmt.Sprintf("bytes=%d-", layer.Size)}, status: 416,
			code: "RANGE_INVALID", wantHeader: map[string]string{"Content-Range": fmt.Sprintf("bytes */%d", layer.Size)}},
		{name: "multi range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": "bytes=0-1,5-6"}, status: 416, code: "RANGE_INVALID"},
		{name: "malformed range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": "bytes=x-y"}, status: 416, code: "RANGE_INVALID"},
		{name: "negative range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": "bytes=-0"}, status: 416, code: "RANGE_INVALID"},
		{name: "overflowing range", method: "GET", path: "/v2/library/app/blobs/" + layer.Digest.String(), header: map[string]string{"Range": "bytes=99999999999999999999-"}, status: 416, code: "RANGE_INVALID"},
		{name: "unknown blob", method: "GET", path: "/v2/library/app/blobs/sha256:" + strings.Repeat("a", 64), status: 404, code: "BLOB_UNKNOWN"},
		{name: "invalid digest", method: "GET", path: "/v2/library/app/blobs/sha256:xyz", status: 400, code: "DIGEST_INVALID"},
		{name: "unknown algorithm", method: "GET", path: "/v2/library/app/blobs/md5:" + strings.Repeat("a", 32), status: 400, code: "DIGEST_INVALID"},
		{name: "short digest", method: "GET", path: "/v2/library/app/manifests/sha256:abc", status: 400, code: "DIGEST_INVALID"},
		{name: "traversal", method: "GET", path: "/v2/../etc/manifests/1.0", status: 400, code: "NAME_INVALID"},
		{name: "encoded traversal", method: "GET", path: "/v2/library/%2e%2e/app/manifests/1.0", status: 400, code: "NAME_INVALID"},
		{name: "uppercase name", method: "GET", path: "/v2/Library/App/manifests/1.0", status: 400, code: "NAME_INVALID"},
		{name: "oversize name", method: "GET", path: "/v2/" + strings.Repeat("a", 300) + "/manifests/1.0", status: 400, code: "NAME_INVALID"},
		{name: "invalid tag", method: "GET", path: "/v2/library/app/manifests/-bad", status: 400, code: "MANIFEST_INVALID"},
		{name: "invalid ns", method: "GET", path: "/v2/library/app/manifests/1.0?ns=not_a_host!", status: 400, code: "NAME_INVALID"},
		{name: "ns case-folded", method: "GET", path: "/v2/org/tool/manifests/v2?ns=GHCR.IO", status: 200},
		{name: "two ns", method: "GET", path: "/v2/library/app/manifests/1.0?ns=docker.io&ns=ghcr.io", status: 400, code: "NAME_INVALID"},
		{name: "unknown ns", method: "GET", path: "/v2/library/app/manifests/1.0?ns=quay.io", status: 404, code: "MANIFEST_UNKNOWN"},
		{name: "push manifest", method: "PUT", path: "/v2/library/app/manifests/1.0", status: 405, code: "UNSUPPORTED"},
		{name: "start upload", method: "POST", path: "/v2/library/app/blobs/uploads/", status: 405, code: "UNSUPPORTED"},
		{name: "delete blob", method: "DELETE", path: "/v2/library/app/blobs/" + layer.Digest.String(), status: 405, code: "UNSUPPORTED"},
		{name: "catalog", method: "GET", path: "/v2/_catalog", status: 405, code: "UNSUPPORTED"},
		{name: "tags list", method: "GET", path: "/v2/library/app/tags/list", status: 405, code: "UNSUPPORTED"},
		{name: "not v2", method: "GET", path: "/v1/x", status: 404, code: "NAME_UNKNOWN"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			req, err := http.NewRequestWithContext(t.Context(), tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if tt.code != "" {
				if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
					t.Fatalf("error Content-Type = %q", ct)
				}
				if !strings.Contains(string(body), `"code":"`+tt.code+`"`) {
					t.Fatalf("body = %s, want code %s", body, tt.code)
				}
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q, want %q", k, got, v)
				}
			}
			if tt.wantBody != "" || tt.method == "HEAD" {
				if string(body) != tt.wantBody {
					t.Errorf("body = %.80q…, want %.80q…", body, tt.wantBody)
				}
			}
		})
	}
}
