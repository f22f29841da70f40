package upstream_test

import (
	"bytes"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

func TestClient_Endpoints(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		yaml     string
		registry string
		want     []upstream.Endpoint
		err      bool
	}{
		{name: "no registries file", registry: "docker.io",
			want: []upstream.Endpoint{{URL: "https://registry-1.docker.io"}}},
		{name: "mirror endpoints in order, then the registry", registry: "docker.io", yaml: `
mirrors:
  docker.io:
    endpoint: ["https://mirror-a.example.com", "http://10.0.0.1:5000/v2", "mirror-c.example.com:8443/"]
`, want: []upstream.Endpoint{
			{URL: "https://mirror-a.example.com", Mirror: true},
			{URL: "http://10.0.0.1:5000", Mirror: true},
			{URL: "https://mirror-c.example.com:8443", Mirror: true},
			{URL: "https://registry-1.docker.io"},
		}},
		{name: "an explicit path is the API root", registry: "registry.k8s.io", yaml: `
mirrors:
  registry.k8s.io:
    endpoint: ["https://harbor.example.com/v2/proxy-k8s", "https://registry.k8s.io"]
`, want: []upstream.Endpoint{
			{URL: "https://harbor.example.com/v2/proxy-k8s", Mirror: true},
			{URL: "https://registry.k8s.io"},
		}},
		{name: "wildcard endpoints for a registry not listed", registry: "quay.io", yaml: `
mirrors:
  "*":
    endpoint: ["https://all.example.com"]
  docker.io:
`, want: []upstream.Endpoint{{URL: "https://all.example.com", Mirror: true}, {URL: "https://quay.io"}}},
		{name: "own entry wins over the wildcard", registry: "docker.io", yaml: `
mirrors:
  "*":
    endpoint: ["https://all.example.com"]
  docker.io:
`, want: []upstream.Endpoint{{URL: "https://registry-1.docker.io"}}},
		{name: "loopback registry is plain http", registry: "127.0.0.1:5000",
			want: []upstream.Endpoint{{URL: "http://127.0.0.1:5000"}}},
		{name: "credentials by endpoint host, registry name and wildcard", registry: "docker.io", yaml: `
mirrors:
  docker.io:
    endpoint: ["https://private.example.com", "https://public.example.com"]
configs:
  private.example.com:
    auth: {username: u, password: p}
  docker.io:
    auth: {identity_token: tok}
`, want: []upstream.Endpoint{
			{URL: "https://private.example.com", Mirror: true, Credentials: true},
			{URL: "https://public.example.com", Mirror: true},
			{URL: "https://registry-1.docker.io", Credentials: true},
		}},
		{name: "wildcard config", registry: "ghcr.io", yaml: `
configs:
  "*":
    auth: {auth: dTpw}
`, want: []upstream.Endpoint{{URL: "https://ghcr.io", Credentials: true}}},
		{name: "missing CA file", registry: "ghcr.io", yaml: `
configs:
  ghcr.io:
    tls: {ca_file: /nonexistent/ca.crt}
`, err: true},
		{name: "auth that is not base64", registry: "ghcr.io", yaml: `
configs:
  ghcr.io:
    auth: {auth: "!!"}
`, err: true},
		{name: "wildcard is no registry", registry: "*", err: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var c *upstream.Client
			if tt.yaml == "" {
				c = upstream.New(nil)
			} else {
				c = upstream.New(parse(t, strings.TrimLeft(tt.yaml, "\n")))
			}
			got, err := c.Endpoints(tt.registry)
			if tt.err {
				if err == nil {
					t.Fatalf("no error, endpoints %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, func(a, b upstream.Endpoint) bool {
				return a.URL == b.URL && a.Mirror == b.Mirror && a.Credentials == b.Credentials
			}) {
				t.Fatalf("endpoints\n got %+v\nwant %+v", got, tt.want)
			}
			u, err := c.Upstream(tt.registry)
			if err != nil {
				t.Fatal(err)
			}
			creds := slices.ContainsFunc(tt.want, func(e upstream.Endpoint) bool { return e.Credentials })
			if u.Endpoint != tt.want[0].URL || u.Credentials != creds {
				t.Fatalf("Upstream = %+v, want endpoint %s credentials %v", u, tt.want[0].URL, creds)
			}
		})
	}
}

// TestClient_Fallback asks a registry through mirror endpoints that are
// down, lack the content, or serve it under a path, and checks the order
// and the ?ns= of every request, as containerd sends them.
func TestClient_Fallback(t *testing.T) {
	t.Parallel()
	img := image(t, 6, 64<<10)
	origin := upstreamtest.Start(t, upstreamtest.Options{})
	push(t, origin, "1", img)
	empty := upstreamtest.Start(t, upstreamtest.Options{InMemory: true})
	prefixed := upstreamtest.Start(t, upstreamtest.Options{Prefix: "/mirror", InMemory: true})
	push(t, prefixed, "1", img)
	flaky := upstreamtest.Start(t, upstreamtest.Options{InMemory: true})
	push(t, flaky, "1", img)
	flaky.SetDown(true)
	failing := upstreamtest.Start(t, upstreamtest.Options{InMemory: true})
	push(t, failing, "1", img)
	failing.SetStatus(http.StatusServiceUnavailable)
	closed := upstreamtest.ClosedURL(t)
	layer := img.Layers[0]

	tests := []struct {
		name      string
		endpoints []string
		// served is the registry that must serve the content.
		served *upstreamtest.Registry
		// asked must have been asked with ?ns=origin; untouched never.
		asked, untouched []*upstreamtest.Registry
	}{
		{name: "refused, hung up, 503, empty, then the registry", endpoints: []string{closed, flaky.URL, failing.URL, empty.URL},
			served: origin, asked: []*upstreamtest.Registry{flaky, failing, empty}},
		{name: "mirror with a path holds it", endpoints: []string{empty.URL, prefixed.URL + "/mirror/v2"},
			served: prefixed, asked: []*upstreamtest.Registry{empty}, untouched: []*upstreamtest.Registry{origin}},
		{name: "the registry itself listed first", endpoints: []string{origin.URL, empty.URL},
			served: origin, untouched: []*upstreamtest.Registry{empty}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, r := range []*upstreamtest.Registry{origin, empty, prefixed, flaky, failing} {
				r.Counter.Reset()
			}
			c := upstream.New(parse(t, yamlf(`
mirrors:
  %q:
    endpoint: [%s]
`, origin.Host, quoteAll(tt.endpoints))))
			b, desc, err := c.FetchManifest(t.Context(), ref(origin.Host, "1", ""))
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != img.Target.Digest || !bytes.Equal(b, img.Blobs[img.Target.Digest]) {
				t.Fatalf("manifest %s, want %s", desc.Digest, img.Target.Digest)
			}
			d, err := c.Resolve(t.Context(), ref(origin.Host, "", layer.Digest))
			if err != nil || d.Size != layer.Size {
				t.Fatalf("Resolve(layer) = %+v, %v; want size %d", d, err, layer.Size)
			}
			got, err := readBlob(t, c, ref(origin.Host, "", ""), layer.Digest, -1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img.Blobs[layer.Digest]) {
				t.Fatal("layer bytes differ")
			}
			if s := tt.served.Counter.Kind(upstreamtest.KindBlob); s.Bytes != layer.Size {
				t.Fatalf("serving registry sent %d blob bytes, want %d", s.Bytes, layer.Size)
			}
			for _, r := range tt.asked {
				reqs := r.Counter.Requests()
				if len(reqs) == 0 {
					t.Fatalf("%s was never asked", r.URL)
				}
				for _, q := range reqs {
					v, _ := url.ParseQuery(q.Query)
					if v.Get("ns") != origin.Host {
						t.Fatalf("%s %s?%s: want ns=%s", q.Method, q.Path, q.Query, origin.Host)
					}
				}
			}
			for _, r := range tt.untouched {
				if n := r.Counter.Total().Requests; n != 0 {
					t.Fatalf("%s got %d requests, want none: %+v", r.URL, n, r.Counter.Requests())
				}
			}
			if tt.served == origin {
				for _, q := range origin.Counter.Requests() {
					if strings.Contains(q.Query, "ns=") {
						t.Fatalf("the registry itself got ?%s", q.Query)
					}
				}
			}
		})
	}
}

func quoteAll(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = `"` + s + `"`
	}
	return strings.Join(q, ", ")
}
