package upstreamtest_test

import (
	"io"
	"net/http"
	"testing"

	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

func TestKindOf(t *testing.T) {
	t.Parallel()
	tests := []struct {
		path string
		want upstreamtest.Kind
	}{
		{"/v2/library/app/manifests/1.0", upstreamtest.KindManifest},
		{"/v2/library/app/manifests/sha256:abc", upstreamtest.KindManifest},
		{"/v2/library/app/blobs/sha256:abc", upstreamtest.KindBlob},
		{"/v2/library/app/blobs/uploads/123", upstreamtest.KindUpload},
		{"/token", upstreamtest.KindToken},
		{"/v2/", upstreamtest.KindOther},
	}
	for _, tt := range tests {
		if got := upstreamtest.KindOf(tt.path); got != tt.want {
			t.Errorf("KindOf(%q) = %q, want %q", tt.path, got, tt.want)
		}
	}
}

// TestRegistry_Push pushes an image and reads it back through the counting
// front with plain HTTP; a Basic registry refuses a request without
// credentials.
func TestRegistry_Push(t *testing.T) {
	t.Parallel()
	img, err := testimage.Build(testimage.Spec{Name: "example.com/x:1", LayerSizes: []int64{100 << 10}, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts upstreamtest.Options
		user string
		want int
	}{
		{name: "anonymous", want: http.StatusOK},
		{name: "basic with credentials", opts: upstreamtest.Options{Auth: upstreamtest.AuthBasic, Username: "u", Password: "p"}, user: "u", want: http.StatusOK},
		{name: "basic without", opts: upstreamtest.Options{Auth: upstreamtest.AuthBasic, Username: "u", Password: "p"}, want: http.StatusUnauthorized},
		{name: "token without", opts: upstreamtest.Options{Auth: upstreamtest.AuthToken, Username: "u", Password: "p"}, want: http.StatusUnauthorized},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := upstreamtest.Start(t, tt.opts)
			if err := r.Push(t.Context(), "x", "1", img); err != nil {
				t.Fatal(err)
			}
			if n := r.Counter.Total().Requests; n != 0 {
				t.Fatalf("push was counted: %d requests", n)
			}
			l := img.Layers[0]
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, r.URL+"/v2/x/blobs/"+l.Digest.String(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if tt.user != "" {
				req.SetBasicAuth(tt.opts.Username, tt.opts.Password)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			n, _ := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.want)
			}
			if tt.want == http.StatusOK && (n != l.Size || r.Counter.Kind(upstreamtest.KindBlob) != (upstreamtest.Stats{Requests: 1, Bytes: l.Size})) {
				t.Fatalf("read %d bytes, counted %+v, want %d", n, r.Counter.Kind(upstreamtest.KindBlob), l.Size)
			}
			if tt.want == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("401 without a challenge")
			}
		})
	}
}
