package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/containerd/v2/core/remotes/docker"
	ctdconfig "github.com/containerd/containerd/v2/core/remotes/docker/config"
)

// TestGolden_ContainerdReadsHosts feeds the golden trees to containerd's own
// hosts.toml loader (the code the daemon and ctr use) and checks the hosts
// it would try, in order.
func TestGolden_ContainerdReadsHosts(t *testing.T) {
	t.Parallel()
	const sluice = "http://127.0.0.1:5000/v2 pull,resolve"
	all := "pull,resolve,push,referrers"
	tests := []struct {
		golden, registry string
		want             []string
	}{
		{"k3s-two-registries", "docker.io", []string{sluice, "https://registry-1.docker.io/v2 " + all}},
		{"k3s-two-registries", "registry.k8s.io", []string{sluice, "https://registry.k8s.io/v2 " + all}},
		// Not mirrored: containerd's own default, sluice is not asked.
		{"k3s-two-registries", "quay.io", []string{"https://quay.io/v2 " + all}},
		{"k3s-endpoint", "docker.io", []string{sluice, "https://mirror.example.com/v2 pull,resolve", "https://registry-1.docker.io/v2 " + all}},
		{"k3s-private-registry", "mirror.example.com", []string{sluice, "https://mirror.example.com/v2 " + all}},
		{"k3s-default-endpoint", "mirror.example.com", []string{sluice, "https://mirror.example.com/v2 " + all}},
		{"k3s-disable-default-endpoint", "docker.io", []string{sluice}},
		{"k3s-disable-default-endpoint", "mirror.example.com", []string{sluice, "https://mirror.example.com/v2 pull,resolve"}},
		{"rke2-wildcard", "quay.io", []string{sluice, "https://quay.io/v2 " + all}},
		{"rke2-wildcard", "docker.io", []string{sluice, "https://registry-1.docker.io/v2 " + all}},
		{"rewrite", "docker.io", []string{sluice, "https://mirror.example.com/v2 pull,resolve", "https://registry-1.docker.io/v2 " + all}},
	}
	for _, tt := range tests {
		t.Run(tt.golden+"/"+tt.registry, func(t *testing.T) {
			t.Parallel()
			root := filepath.Join("testdata", "golden", tt.golden, "expected")
			hosts, err := ctdconfig.ConfigureHosts(t.Context(), ctdconfig.HostOptions{
				HostDir: ctdconfig.HostDirFromRoot(root),
			})(tt.registry)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, h := range hosts {
				got = append(got, h.Scheme+"://"+h.Host+h.Path+" "+caps(h.Capabilities))
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("containerd hosts:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func caps(c docker.HostCapabilities) string {
	var out []string
	for _, x := range []struct {
		c    docker.HostCapabilities
		name string
	}{{docker.HostCapabilityPull, "pull"}, {docker.HostCapabilityResolve, "resolve"}, {docker.HostCapabilityPush, "push"}, {docker.HostCapabilityReferrers, "referrers"}} {
		if c.Has(x.c) {
			out = append(out, x.name)
		}
	}
	return strings.Join(out, ",")
}
