package routing

import (
	"context"
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/policy"
)

// testImage is an index → manifest → config + layer in a memory store.
type testImage struct {
	index, manifest, config, layer ocispec.Descriptor
}

func (ti testImage) digestKeys() []string {
	return []string{ti.index.Digest.String(), ti.manifest.Digest.String(), ti.config.Digest.String(), ti.layer.Digest.String()}
}

// addImage stores an image whose layer holds layerData; with addLayer
// false the layer blob is left out (as for a platform not pulled).
func addImage(t *testing.T, s *memory.Store, name, configData, layerData string, addLayer bool) testImage {
	t.Helper()
	var ti testImage
	ti.config = s.Add(ocispec.MediaTypeImageConfig, []byte(configData))
	if addLayer {
		ti.layer = s.Add(ocispec.MediaTypeImageLayerGzip, []byte(layerData))
	} else {
		ti.layer = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digestOf(layerData), Size: int64(len(layerData))}
	}
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: ti.config, Layers: []ocispec.Descriptor{ti.layer}}
	m.SchemaVersion = 2
	ti.manifest = s.Add(ocispec.MediaTypeImageManifest, mustJSON(t, m))
	idx := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{ti.manifest}}
	idx.SchemaVersion = 2
	ti.index = s.Add(ocispec.MediaTypeImageIndex, mustJSON(t, idx))
	if err := s.Tag(name, ti.index); err != nil {
		t.Fatal(err)
	}
	return ti
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// eventually polls cond every 10 ms for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startAdvertiser(t *testing.T, a *Advertiser) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func hasAll(got []string, want ...string) bool {
	for _, w := range want {
		if !slices.Contains(got, w) {
			return false
		}
	}
	return true
}

func TestAdvertiser_FollowsStore(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	self := net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000"))
	other := net.Node("other", netip.MustParseAddrPort("127.0.0.2:5000"))
	s := memory.New()
	nginx := addImage(t, s, "docker.io/library/nginx:1.27", `{"c":1}`, "layer-shared", true)
	nginxTag := TagKey("docker.io", "library/nginx", "1.27")

	reg := prometheus.NewRegistry()
	a := NewAdvertiser(self, s, WithRegisterer(reg), WithDebounce(10*time.Millisecond))
	startAdvertiser(t, a)

	// At start: every digest of the image and its tag.
	eventually(t, "initial keys", func() bool { return hasAll(a.Advertised(), append(nginx.digestKeys(), nginxTag)...) })
	if n := len(a.Advertised()); n != 5 {
		t.Fatalf("advertised %d keys, want 5: %v", n, a.Advertised())
	}
	ch, err := other.Lookup(t.Context(), nginx.layer.Digest.String(), 1)
	if err != nil {
		t.Fatal(err)
	}
	if got := collect(t, ch, time.Second); len(got) != 1 || got[0].ID != "self" {
		t.Fatalf("other node Lookup = %v, want self", got)
	}

	// An image created later that shares the layer.
	redis := addImage(t, s, "docker.io/library/redis:7", `{"c":2}`, "layer-shared", true)
	redisTag := TagKey("docker.io", "library/redis", "7")
	eventually(t, "redis keys after event", func() bool { return hasAll(a.Advertised(), append(redis.digestKeys(), redisTag)...) })

	// Deleting nginx withdraws its own keys but keeps the shared layer.
	s.Untag("docker.io/library/nginx:1.27")
	eventually(t, "nginx withdrawn", func() bool { return !slices.Contains(a.Advertised(), nginxTag) })
	got := a.Advertised()
	for _, k := range []string{nginx.index.Digest.String(), nginx.manifest.Digest.String(), nginx.config.Digest.String()} {
		if slices.Contains(got, k) {
			t.Errorf("key %s of the deleted image still advertised", k)
		}
	}
	if !slices.Contains(got, redis.layer.Digest.String()) {
		t.Error("shared layer withdrawn although redis still holds it")
	}
	if p := net.Providers(nginxTag); len(p) != 0 {
		t.Errorf("memory network still lists %v for the deleted tag", p)
	}
	if v, ok := gaugeValue(t, reg, "sluice_advertised_keys"); !ok || int(v) != len(got) {
		t.Errorf("sluice_advertised_keys = %v (%v), want %d", v, ok, len(got))
	}
	if v, ok := gaugeValue(t, reg, "sluice_peers"); !ok || v != 1 {
		t.Errorf("sluice_peers = %v (%v), want 1", v, ok)
	}
}

// gaugeValue gathers reg and returns the value of the gauge name.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) (float64, bool) {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			return mf.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}

func TestAdvertiser_ContentEvents(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	self := net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000"))
	s := memory.New()
	img := addImage(t, s, "docker.io/library/app:1", `{"c":3}`, "late-layer", false)
	a := NewAdvertiser(self, s, WithDebounce(10*time.Millisecond))
	startAdvertiser(t, a)
	eventually(t, "manifest advertised", func() bool { return slices.Contains(a.Advertised(), img.manifest.Digest.String()) })
	if slices.Contains(a.Advertised(), img.layer.Digest.String()) {
		t.Fatal("missing layer advertised")
	}
	s.Add(ocispec.MediaTypeImageLayerGzip, []byte("late-layer"))
	eventually(t, "layer advertised after content-create", func() bool { return slices.Contains(a.Advertised(), img.layer.Digest.String()) })
	s.Delete(img.layer.Digest)
	eventually(t, "layer withdrawn after content-delete", func() bool { return !slices.Contains(a.Advertised(), img.layer.Digest.String()) })
}

// fakePolicy denies by rule and records inputs.
type fakePolicy struct {
	mu     sync.Mutex
	inputs []policy.Input
	decide func(policy.Input) (bool, error)
}

func (f *fakePolicy) Decide(_ context.Context, action policy.Action, in policy.Input) (policy.Decision, error) {
	f.mu.Lock()
	f.inputs = append(f.inputs, in)
	f.mu.Unlock()
	if action != policy.ActionAdvertise {
		return policy.Decision{}, errors.New("unexpected action " + string(action))
	}
	ok, err := f.decide(in)
	return policy.Decision{Allow: ok}, err
}

func TestAdvertiser_Policy(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	self := net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000"))
	s := memory.New()
	latest := addImage(t, s, "docker.io/library/app:latest", `{"c":4}`, "shared", true)
	secret := addImage(t, s, "registry.example.com/secret/app:1", `{"c":5}`, "shared", true)
	broken := addImage(t, s, "quay.io/broken/app:1", `{"c":6}`, "other", true)
	pol := &fakePolicy{decide: func(in policy.Input) (bool, error) {
		switch {
		case in.Reference.Registry == "quay.io":
			return true, errors.New("engine trapped")
		case in.Reference.Tag == "latest":
			return false, nil
		case in.Reference.Registry == "registry.example.com":
			return false, nil
		}
		return true, nil
	}}
	a := NewAdvertiser(self, s, WithPolicy(pol), WithDebounce(10*time.Millisecond))
	startAdvertiser(t, a)
	want := []string{latest.index.Digest.String(), latest.manifest.Digest.String(),
		latest.config.Digest.String(), latest.layer.Digest.String()}
	eventually(t, "allowed keys", func() bool { return hasAll(a.Advertised(), want...) })
	got := a.Advertised()
	if len(got) != len(want) {
		t.Fatalf("advertised %v, want %v", got, want)
	}
	for _, k := range []string{TagKey("docker.io", "library/app", "latest"), secret.manifest.Digest.String(),
		broken.layer.Digest.String(), TagKey("quay.io", "broken/app", "1")} {
		if slices.Contains(got, k) {
			t.Errorf("denied key %s advertised", k)
		}
	}
	// The shared layer is allowed via app:latest although denied for secret.
	if latest.layer.Digest != secret.layer.Digest || !slices.Contains(got, secret.layer.Digest.String()) {
		t.Error("layer shared with an allowed image not advertised")
	}

	pol.mu.Lock()
	defer pol.mu.Unlock()
	var sawLayer, sawTag bool
	for _, in := range pol.inputs {
		if in.Action != policy.ActionAdvertise || in.Source == nil || in.Reference == nil {
			t.Fatalf("bad input %+v", in)
		}
		if in.Reference.Digest == latest.layer.Digest.String() && in.Source.Image == "docker.io/library/app:latest" {
			sawLayer = in.Reference.Kind == policy.KindBlob && in.MediaType == ocispec.MediaTypeImageLayerGzip &&
				in.Size == latest.layer.Size && in.Reference.Repository == "library/app"
		}
		if in.Reference.Tag == "latest" {
			sawTag = in.Reference.Kind == policy.KindManifest && in.Reference.Digest == "" &&
				in.MediaType == ocispec.MediaTypeImageIndex
		}
	}
	if !sawLayer || !sawTag {
		t.Errorf("policy inputs lack the expected layer (%v) or tag (%v) input", sawLayer, sawTag)
	}
}

// flakyRouter fails the first fails Advertise calls and counts calls.
type flakyRouter struct {
	Router
	mu    sync.Mutex
	fails int
	calls int
}

func (f *flakyRouter) Advertise(ctx context.Context, keys []string) error {
	f.mu.Lock()
	f.calls++
	fail := f.calls <= f.fails
	f.mu.Unlock()
	if fail {
		return ErrNoPeers
	}
	return f.Router.Advertise(ctx, keys)
}

func (f *flakyRouter) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

func TestAdvertiser_RetryAndReprovide(t *testing.T) {
	t.Parallel()
	net := NewMemory()
	r := &flakyRouter{Router: net.Node("self", netip.MustParseAddrPort("127.0.0.1:5000")), fails: 1}
	s := memory.New()
	img := addImage(t, s, "docker.io/library/app:1", `{"c":7}`, "l", true)
	a := NewAdvertiser(r, s, WithReprovideInterval(100*time.Millisecond))
	startAdvertiser(t, a)
	// The first Advertise fails; the retry (1 s later) succeeds.
	eventually(t, "advertised after retry", func() bool { return hasAll(a.Advertised(), img.digestKeys()...) })
	n := r.count()
	if n < 2 {
		t.Fatalf("Advertise called %d times, want a retry", n)
	}
	eventually(t, "reprovided", func() bool { return r.count() >= n+2 })
}

func digestOf(s string) digest.Digest { return digest.FromString(s) }
