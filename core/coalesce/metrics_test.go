package coalesce_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

// TestCoalescer_Metrics: a burst counts one fetch per blob and per tag,
// the upstream bytes read, the spool's bytes and no waiter once answered;
// a refused fetch and a failed one are counted by result; Close empties
// the spool gauge.
func TestCoalescer_Metrics(t *testing.T) {
	t.Parallel()
	m := metrics.New(prometheus.NewRegistry())
	n := newNode(t, coalesce.Config{}, nil, "package sluice.fetch\n\ndeny contains \"not latest\" if input.reference.tag == \"2.0\"\n", coalesce.WithMetrics(m))
	layer := n.img.Layers[0]
	n.up.Counter.Reset()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if resp, b, err := n.get(t, layer.Digest.String(), true); err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(b) != layer.Digest {
				t.Errorf("blob: %v %v", err, resp)
			}
		})
		wg.Go(func() {
			if resp, _, err := n.get(t, "1.0", true); err != nil || resp.StatusCode != http.StatusOK {
				t.Errorf("tag: %v %v", err, resp)
			}
		})
	}
	wg.Wait()
	fetches := func(kind, result string) float64 {
		return value(t, m.CoalesceFetches.WithLabelValues(kind, result))
	}
	if got := fetches("blob", "ok"); got != 1 {
		t.Errorf(`fetches{blob,ok} = %v, want 1 for a burst of 4`, got)
	}
	if got := fetches("manifest", "ok"); got != 1 {
		t.Errorf(`fetches{manifest,ok} = %v, want 1 for a burst of 4`, got)
	}
	manifest := int64(len(n.img.Blobs[n.img.Target.Digest]))
	read := n.up.Counter.Kind(upstreamtest.KindBlob).Bytes + manifest
	if got := value(t, m.CoalesceUpstreamBytes); int64(got) != layer.Size+manifest || int64(got) > read {
		t.Errorf("upstream bytes = %v, want %d (layer %d + manifest %d)", got, layer.Size+manifest, layer.Size, manifest)
	}
	if got := value(t, m.CoalesceSpoolBytes); int64(got) != layer.Size+manifest {
		t.Errorf("spool bytes = %v, want %d", got, layer.Size+manifest)
	}
	if got := value(t, m.CoalesceWaiters); got != 0 {
		t.Errorf("waiters = %v once every request was answered", got)
	}

	// Denied by the fetch policy, and a digest the upstream lacks.
	if resp, _, _ := n.get(t, "2.0", true); resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("denied tag: %v, want 404", resp)
	}
	if got := fetches("manifest", "denied"); got != 1 {
		t.Errorf(`fetches{manifest,denied} = %v, want 1`, got)
	}
	if resp, _, _ := n.get(t, digest.FromString("nothing").String(), true); resp == nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown blob: %v, want 404", resp)
	}
	if got := fetches("blob", "failed"); got != 1 {
		t.Errorf(`fetches{blob,failed} = %v, want 1`, got)
	}

	if err := n.c.Close(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for value(t, m.CoalesceSpoolBytes) != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := value(t, m.CoalesceSpoolBytes); got != 0 {
		t.Errorf("spool bytes after Close = %v", got)
	}
}

// value reads the one metric c collects.
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var d dto.Metric
	if err := (<-ch).Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither a counter nor a gauge", d.String())
	return 0
}
