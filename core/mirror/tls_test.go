package mirror_test

import (
	"crypto/tls"
	"net/http"
	"testing"

	"github.com/sluice-oci/sluice/core/mirror"
)

// TestMirror_TLSNodeRefusesPlainHTTPPeer: the scheme a peer announces is
// its own claim. A node configured for mTLS to peers must not be talked
// into a plain-http transfer (no peer authentication, bytes readable on the
// wire) by a peer announcing "http": it answers 404 and fetches nothing.
func TestMirror_TLSNodeRefusesPlainHTTPPeer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []mirror.Option
		want int
	}{
		{"no TLS configured: http peers are fine", nil, http.StatusOK},
		{"TLS configured: http peer refused", []mirror.Option{mirror.WithTLS(&tls.Config{MinVersion: tls.VersionTLS12})}, http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := newClusterWith(t, 2, clusterCfg{opts: tc.opts})
			img := buildImage(t, 4096)
			c.hold(t, 0, img)
			resp, body, err := get(t, c.nodes[1].srv.URL+"/v2/library/app/blobs/"+img.Layers[0].Digest.String())
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d (%d body bytes)", resp.StatusCode, tc.want, len(body))
			}
			if tc.want == http.StatusNotFound && testutilCount(c.nodes[1].metrics) != 0 {
				t.Fatalf("%v bytes fetched over plain http", testutilCount(c.nodes[1].metrics))
			}
		})
	}
}
