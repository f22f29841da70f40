package ops

import (
	"context"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// lookupFinds reports whether n's DHT lookup of key returns the peer id.
func lookupFinds(t *testing.T, n *routing.P2P, key, id string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	ch, err := n.Lookup(ctx, key, 0)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for p := range ch {
		found = found || p.ID == id
	}
	return found
}

// TestShutdown_DrainsPeerTransfer: SIGTERM to A while it sends a 200 MiB
// layer to B (paced to ~4 s): A's readiness fails at once, the transfer
// completes with the right digest, A exits 0 within --shutdown-timeout,
// and a peer's lookup no longer finds A (its provider records outlive it
// on the DHT; A told its peers it left).
func TestShutdown_DrainsPeerTransfer(t *testing.T) {
	const size = 200 << 20
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/big:1.0", LayerSizes: []int64{size}, Seed: 93})
	if err != nil {
		t.Fatal(err)
	}
	layer := img.Largest()
	const timeout = 30 * time.Second
	a, b := twoNodes(t, "127.0.0.93", "127.0.0.94", img,
		"--peer-rate-limit", "52428800", "--shutdown-timeout", timeout.String())
	ctx := t.Context()

	// A third peer, in the test: its lookups show whether A is still a
	// provider.
	c, err := routing.NewP2P(ctx, routing.P2PConfig{ListenAddr: "127.0.0.95:0", RegistryPort: 5000, Bootstrap: []string{a.Addr, b.Addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	key := routing.DigestKey(layer.Digest)
	if !cluster.WaitFor(ctx, 10*time.Second, func() bool { return lookupFinds(t, c, key, a.ID) }) {
		t.Fatal("before SIGTERM: the peer's lookup does not find A")
	}

	type result struct {
		code int
		n    int64
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, n, err := get(ctx, b.RegistryURL(), "/v2/library/big/blobs/"+layer.Digest.String()+"?ns=docker.io", layer.Digest)
		done <- result{code, n, err}
	}()
	if !cluster.WaitFor(ctx, 10*time.Second, func() bool {
		v, _ := b.Metric(ctx, "sluice_bytes_fetched_total", `from="peer"`)
		return v > 8<<20
	}) {
		t.Fatal("the transfer did not start")
	}
	term := time.Now()
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	notReady := cluster.WaitFor(ctx, 2*time.Second, func() bool {
		resp, err := http.Get(a.MetricsURL() + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	code, exited := a.Wait(timeout + 5*time.Second)
	took := time.Since(term)
	if !exited {
		t.Fatalf("A still running %v after SIGTERM", took)
	}
	if code != 0 {
		t.Errorf("A exited %d, want 0 after a clean drain", code)
	}
	if took > timeout {
		t.Errorf("A took %v to exit, over --shutdown-timeout %v", took, timeout)
	}
	if !notReady {
		t.Error("A's /readyz did not fail during the drain")
	}
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the transfer did not end after A exited")
	}
	if r.err != nil || r.code != 200 || r.n != layer.Size {
		t.Fatalf("transfer: status %d, %d of %d bytes, err %v", r.code, r.n, layer.Size, r.err)
	}
	t.Logf("A drained a %d MiB paced transfer and exited %v after SIGTERM", layer.Size>>20, took.Round(time.Millisecond))
	if lookupFinds(t, c, key, a.ID) {
		t.Error("after A left: the peer's lookup still finds A")
	}
}
