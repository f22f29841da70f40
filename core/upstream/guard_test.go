package upstream_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/upstream"
)

// TestClient_Blob_RefusesUnnamedLoopback: a registry name comes from a
// peer's ?ns=, a blob URL from a registry's redirect. Neither may make the
// node connect to a loopback or link-local host that registries.yaml does
// not name; one it names is asked as before.
func TestClient_Blob_RefusesUnnamedLoopback(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	body := []byte("internal")
	d := digest.FromBytes(body)
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Docker-Content-Digest", d.String())
		_, _ = w.Write(body)
	}))
	t.Cleanup(internal.Close)
	host := internal.Listener.Addr().String()
	// A registry named as 127.0.0.1 that redirects its blobs to the
	// internal host under another name (localhost), which nobody named.
	redirecting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+strings.Replace(host, "127.0.0.1", "localhost", 1)+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	t.Cleanup(redirecting.Close)
	tests := []struct {
		name, registry, yaml string
		want                 error
	}{
		{"no registries.yaml", host, "", upstream.ErrForbiddenAddress},
		{"wildcard only", host, "mirrors:\n  \"*\":\n", upstream.ErrForbiddenAddress},
		{"link-local endpoint of the wildcard", "169.254.169.254", "", upstream.ErrForbiddenAddress},
		{"redirect to an unnamed loopback host", redirecting.Listener.Addr().String(),
			yamlf("mirrors:\n  %q:\n", redirecting.Listener.Addr().String()), upstream.ErrForbiddenAddress},
		{"named under mirrors", host, yamlf("mirrors:\n  %q:\n", host), nil},
		{"named as an endpoint of the wildcard", "registry.example", yamlf("mirrors:\n  \"*\":\n    endpoint: [\"http://%s\"]\n", host), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := upstream.New(nil)
			if tt.yaml != "" {
				c = upstream.New(parse(t, tt.yaml))
			}
			before := hits.Load()
			_, err := readBlob(t, c, ref(tt.registry, "", ""), d, int64(len(body)))
			if tt.want != nil {
				if !errors.Is(err, tt.want) {
					t.Fatalf("error %v, want %v", err, tt.want)
				}
				if n := hits.Load() - before; n != 0 {
					t.Fatalf("the internal host got %d requests", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("named host: %v", err)
			}
		})
	}
}
