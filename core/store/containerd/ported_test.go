package containerd

import (
	"slices"
	"strconv"
	"testing"
)

// TestSources_LabelWithoutPort: containerd labels content pulled from a
// registry with a port under the host alone; read with the node's image
// names, the label stands for the registry with its port, so a mirrors
// policy naming "127.0.0.1:40941" shares what containerd pulled from it
// (the five-node rollout's peers were refused its manifests: "content
// known under registries not in mirrors: 127.0.0.1").
func TestSources_LabelWithoutPort(t *testing.T) {
	t.Parallel()
	const key = LabelDistributionSource + "127.0.0.1"
	tests := []struct {
		name   string
		images []string // registries of the node's image names
		labels map[string]string
		want   []string
	}{
		{"no image names the host: the label as written", nil, map[string]string{key: "e2e/app"}, []string{"127.0.0.1"}},
		{"one registry with a port on the host", []string{"127.0.0.1:40941", "docker.io"}, map[string]string{key: "e2e/app"}, []string{"127.0.0.1:40941"}},
		{"two: every candidate is judged", []string{"127.0.0.1:5000", "127.0.0.1:40941"}, map[string]string{key: "e2e/app"}, []string{"127.0.0.1:40941", "127.0.0.1:5000"}},
		{"a label with a port is kept", []string{"127.0.0.1:40941"}, map[string]string{LabelDistributionSource + "127.0.0.1:5000": "a"}, []string{"127.0.0.1:5000"}},
		{"another host is untouched", []string{"registry.local:5000"}, map[string]string{LabelDistributionSource + "docker.io": "library/x"}, []string{"docker.io"}},
		{"a host of a name", []string{"registry.local:5000"}, map[string]string{LabelDistributionSource + "registry.local": "team/app"}, []string{"registry.local:5000"}},
		{"IPv6", []string{"[::1]:5000"}, map[string]string{LabelDistributionSource + "::1": "app"}, []string{"[::1]:5000"}},
		{"the host named without a port too: both are candidates", []string{"registry.local:5000", "registry.local"}, map[string]string{LabelDistributionSource + "registry.local": "team/app"}, []string{"registry.local", "registry.local:5000"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var p portedHosts
			for _, r := range tc.images {
				p.note(r)
			}
			regs, repos := sources(tc.labels, p.expand)
			if !slices.Equal(regs, tc.want) {
				t.Fatalf("registries %v, want %v", regs, tc.want)
			}
			if len(repos) == 0 {
				t.Fatalf("repositories lost: %v", repos)
			}
		})
	}
}

// TestPortedHosts_Bounded: image names cannot grow the map past its bound.
func TestPortedHosts_Bounded(t *testing.T) {
	t.Parallel()
	var p portedHosts
	for i := range maxPortedHosts + 10 {
		p.note("10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256) + ":5000")
	}
	if len(p.m) != maxPortedHosts {
		t.Fatalf("%d hosts remembered, want %d", len(p.m), maxPortedHosts)
	}
}
