package e2e

import (
	"testing"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/internal/ctrtest"
)

// TestRegistry_ContainerdPullsFromSluiceOverContainerd: `sluice run` over a
// real containerd serves a second containerd that has sluice as its
// mirror in hosts.toml; the upstream is a closed port.
func TestRegistry_ContainerdPullsFromSluiceOverContainerd(t *testing.T) {
	e := newEnv(t, 1)
	img := e.image("direct:1.0", 11, 2<<20, 512<<10)
	e.importTo(0, img)

	client := ctrtest.Start(t)
	hosts := t.TempDir()
	regs, _, err := config.ParseRegistries("e2e.yaml", []byte("mirrors:\n  \""+e.registry+"\":\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := config.WriteHosts(t.Context(), config.HostsOptions{Registries: regs, HostsDir: hosts, Mirror: e.nodes[0].RegistryURL()}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Ctr(t.Context(), "images", "pull", "--hosts-dir", hosts, "--all-platforms", "--local", "--snapshotter", "native", img.Name); err != nil {
		t.Fatal(err)
	}
	e.daemons = append(e.daemons, client)
	e.assertHas(1, img)
	if local := e.metric(0, "sluice_bytes_served_total", `to="local"`); local < float64(img.Largest().Size) {
		t.Fatalf("sluice served %.0f bytes, want the image", local)
	}
}
