package registry_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/memory"
)

// TestServer_RegistryLabelBounded: the registry label of
// sluice_mirror_requests_total comes from the client's ?ns=. Two thousand
// made-up names must not make two thousand series.
func TestServer_RegistryLabelBounded(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	srv := registry.New(memory.New(), registry.WithMetrics(metrics.New(reg)))
	for i := range 2000 {
		r := httptest.NewRequest(http.MethodGet, fmt.Sprintf("/v2/library/a/manifests/x?ns=r%d.example", i), nil)
		r.Header.Set(registry.PeerHeader, "12D3KooWpeer")
		srv.ServeHTTP(httptest.NewRecorder(), r)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() == "sluice_mirror_requests_total" {
			series = len(mf.GetMetric())
		}
	}
	if series == 0 || series > 40 {
		t.Fatalf("sluice_mirror_requests_total has %d series after 2000 distinct ?ns= values, want a small bounded number", series)
	}
}
