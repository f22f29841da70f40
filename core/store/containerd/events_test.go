package containerd_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/internal/ctrtest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// TestStore_SubscribeResyncsAfterRestart: when containerd restarts, the
// event stream is re-established and says so with a resync event (events
// of the gap are lost), and events flow again on the same channel.
func TestStore_SubscribeResyncsAfterRestart(t *testing.T) {
	d := ctrtest.Start(t)
	s, err := containerd.Open(t.Context(), d.Socket, ctrtest.Namespace, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	events, err := s.Subscribe(t.Context())
	if err != nil {
		t.Fatal(err)
	}

	d.Stop()
	bin, err := ctrtest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	// Let the client notice the daemon is gone, as after a real restart.
	time.Sleep(500 * time.Millisecond)
	d2, err := ctrtest.StartIn(bin, d.Dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d2.Stop)

	wait := func(what string, match func(store.Event) bool) {
		t.Helper()
		timeout := time.After(20 * time.Second)
		for {
			select {
			case ev, ok := <-events:
				if !ok {
					t.Fatalf("event channel closed while waiting for %s", what)
				}
				if match(ev) {
					return
				}
			case <-timeout:
				t.Fatalf("no %s within 20s of the restart", what)
			}
		}
	}
	start := time.Now()
	wait("resync event", func(ev store.Event) bool { return ev.Type == store.EventResync })
	t.Logf("resync %s after the restart", time.Since(start).Round(time.Millisecond))

	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/after-restart:1", LayerSizes: []int64{64}, Seed: 21})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := img.WriteTar(&buf); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Import(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	wait("image-create event after the restart", func(ev store.Event) bool {
		return ev.Type == store.EventImageCreate && ev.Image.Name == img.Name
	})
}
