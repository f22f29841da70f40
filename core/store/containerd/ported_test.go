package containerd

import (
	"slices"
	"strconv"
	"testing"
)

// TestSources_LabelWithoutPort: containerd labels content pulled from a
// registry with a port under the host alone; read with the registries of
// the images that reach the content, the label stands for the registry
// with its port, so a mirrors policy naming "127.0.0.1:40941" shares what
// containerd pulled from it (the five-node rollout's peers were refused
// its manifests: "content known under registries not in mirrors:
// 127.0.0.1"). Whenever the images do not say so unambiguously, the label
// is read as written (fails closed).
func TestSources_LabelWithoutPort(t *testing.T) {
	t.Parallel()
	const key = LabelDistributionSource + "127.0.0.1"
	tests := []struct {
		name   string
		images []string // registries of the images that reach the content
		labels map[string]string
		want   []string
	}{
		{"no image reaches it (a pull in flight): as written", nil, map[string]string{key: "e2e/app"}, []string{"127.0.0.1"}},
		{"reached by one registry with a port on the host", []string{"127.0.0.1:40941", "docker.io"}, map[string]string{key: "e2e/app"}, []string{"127.0.0.1:40941"}},
		{"two: every candidate is judged", []string{"127.0.0.1:5000", "127.0.0.1:40941"}, map[string]string{key: "e2e/app"}, []string{"127.0.0.1:40941", "127.0.0.1:5000"}},
		{"a label with a port is kept", []string{"127.0.0.1:40941"}, map[string]string{LabelDistributionSource + "127.0.0.1:5000": "a"}, []string{"127.0.0.1:5000"}},
		{"another host is untouched", []string{"registry.local:5000"}, map[string]string{LabelDistributionSource + "docker.io": "library/x"}, []string{"docker.io"}},
		{"a host of a name", []string{"registry.local:5000"}, map[string]string{LabelDistributionSource + "registry.local": "team/app"}, []string{"registry.local:5000"}},
		{"also reached by the bare host: as written", []string{"registry.local:5000", "registry.local"}, map[string]string{LabelDistributionSource + "registry.local": "team/app"}, []string{"registry.local"}},
		{"IPv6", []string{"[::1]:5000"}, map[string]string{LabelDistributionSource + "::1": "app"}, []string{"[::1]:5000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			regs, repos := sources(tc.labels, func(r string) []string { return portlessLabel(r, tc.images) })
			if !slices.Equal(regs, tc.want) {
				t.Fatalf("registries %v, want %v", regs, tc.want)
			}
			if len(repos) == 0 {
				t.Fatalf("repositories lost: %v", repos)
			}
		})
	}
}

// TestPortedHosts: the fast check notes hosts named with a port other
// than the default, within a bound.
func TestPortedHosts(t *testing.T) {
	t.Parallel()
	var p portedHosts
	for _, r := range []string{"ghcr.io:443", "plain.example", "insecure.local:80", "registry.local:5000"} {
		p.note(r)
	}
	for host, want := range map[string]bool{"ghcr.io": false, "plain.example": false, "insecure.local": false, "registry.local": true} {
		if got := p.has(host); got != want {
			t.Errorf("has(%q) = %v, want %v", host, got, want)
		}
	}
	for i := range maxPortedHosts + 10 {
		p.note("10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + ":5000")
	}
	if len(p.m) != maxPortedHosts {
		t.Fatalf("%d hosts remembered, want %d", len(p.m), maxPortedHosts)
	}
}
