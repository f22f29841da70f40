package e2e

import (
	"fmt"
	"testing"

	"github.com/sluice-oci/sluice/internal/cluster"
)

// TestPeerAddress_DeadAnnouncedAddress: node1 announces, before its real
// address, addresses nothing listens on (as docker0 or a stale interface
// would), and its registry listens on every interface, so peers must find
// the address that works. node2 pulls node1's image through it.
func TestPeerAddress_DeadAnnouncedAddress(t *testing.T) {
	port, err := cluster.FreePort("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, 2, []string{
		"--registry-addr", fmt.Sprintf("0.0.0.0:%d", port),
		"--p2p-announce", "127.0.0.99:1", "--p2p-announce", "127.0.0.98:1",
	})
	e.nodes[0].RegistryPort = port
	img := e.image("dead-addr:1", 41, 1<<20, 4096)
	e.importTo(0, img)
	if err := e.pull(t.Context(), 1, img.Name); err != nil {
		t.Fatal(err)
	}
	e.assertHas(1, img)
}
