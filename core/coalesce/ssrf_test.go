package coalesce_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/upstream"
)

// TestCoalescer_ServePeer_OnlyExplicitRegistries: whoever reaches the
// registry port names the registry in ?ns=. A node must not fetch from a
// host that its registries.yaml does not list by name (a "*" match or no
// registries.yaml at all): otherwise any peer, or anyone without mTLS,
// makes it send requests to 127.0.0.1 admin ports, 169.254.169.254 or
// internal hosts the requester cannot reach itself. Wildcard turns
// fetching for "*" on, and even then a loopback host is refused unless
// registries.yaml names it.
func TestCoalescer_ServePeer_OnlyExplicitRegistries(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	internal := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.NotFound(w, r)
	}))
	t.Cleanup(internal.Close)
	host := internal.Listener.Addr().String()
	parse := func(yaml string) *config.Registries {
		if yaml == "" {
			return nil
		}
		reg, _, err := config.ParseRegistries("registries.yaml", []byte(yaml))
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	tests := []struct {
		name     string
		yaml     string
		wildcard bool
		want     bool // the internal host is asked
	}{
		{"no registries.yaml", "", false, false},
		{"wildcard mirror", "mirrors:\n  \"*\":\n", false, false},
		{"wildcard mirror, wildcard fetching on: loopback still refused", "mirrors:\n  \"*\":\n", true, false},
		{"no registries.yaml, wildcard fetching on: loopback still refused", "", true, false},
		{"other registry listed", "mirrors:\n  docker.io:\n", false, false},
		{"listed by name", fmt.Sprintf("mirrors:\n  %q:\n", host), false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits.Store(0)
			srv := coalescingServer(t, parse(tt.yaml), coalesce.Config{Wildcard: tt.wildcard})
			d := digest.FromString("anything")
			for _, path := range []string{"blobs/" + d.String(), "manifests/" + d.String(), "manifests/v1"} {
				if status := askAsPeer(t, fmt.Sprintf("%s/v2/admin/%s?ns=%s", srv.URL, path, host)); status != http.StatusNotFound {
					t.Errorf("%s: status %d, want 404", path, status)
				}
			}
			if got := hits.Load() > 0; got != tt.want {
				t.Errorf("the internal host at %s got %d requests; want requests: %t", host, hits.Load(), tt.want)
			}
		})
	}
}

// named is a registries.yaml that lists host under mirrors by name: the
// test upstreams are on loopback, which nothing else lets a node fetch.
func named(t *testing.T, host string) *config.Registries {
	t.Helper()
	reg, _, err := config.ParseRegistries("registries.yaml", []byte(fmt.Sprintf("mirrors:\n  %q:\n", host)))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// coalescingServer is a registry with an empty store whose coalescer
// fetches through upstreams named by reg; cfg's spool defaults to 1 MiB
// for a minute in the test's directory.
func coalescingServer(t *testing.T, reg *config.Registries, cfg coalesce.Config) *httptest.Server {
	t.Helper()
	c, err := coalesce.New(upstream.New(reg), testSpool(t, cfg, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	srv := httptest.NewServer(registry.New(memory.New(), registry.WithCoalescer(c)))
	t.Cleanup(srv.Close)
	return srv
}

// askAsPeer GETs url as a peer asking the node to coalesce, and returns
// the status.
func askAsPeer(t *testing.T, url string) int {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	req.Header.Set(registry.PeerHeader, "node-x")
	req.Header.Set(oci.CoalesceHeader, "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
