package coalesce_test

import (
	"net/http"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/registry"
)

// TestCoalescer_ServePeer_FetchDecidedPerPeer: what the node fetched for
// one peer is content it fetched on behalf of whoever reads it. A fetch
// policy that refuses a peer (SECURITY.md: a drop-in denying by
// input.peer.tls_subject or id) must keep refusing it once another peer
// started the fetch: the spool answers a peer only under a fetch decision
// made for that peer, with or without the coalesce header.
func TestCoalescer_ServePeer_FetchDecidedPerPeer(t *testing.T) {
	t.Parallel()
	n := newNode(t, coalesce.Config{}, nil, "package sluice.fetch\n\ndeny contains \"not for node-denied\" if input.peer.id == \"node-denied\"\n")
	layer := n.img.Layers[0].Digest
	for _, ref := range []string{layer.String(), n.img.Target.Digest.String()} {
		if resp, b, err := n.get(t, ref, true); err != nil || resp.StatusCode != http.StatusOK || digest.FromBytes(b).String() != ref {
			t.Fatalf("%s for node-x: %v %v", ref, err, resp)
		}
		for _, coalesce := range []bool{true, false} {
			resp, b, err := n.get(t, ref, coalesce, registry.PeerHeader, "node-denied")
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode == http.StatusOK {
				t.Errorf("%s (coalesce header %t): the spool served %d bytes to a peer the fetch policy refuses", ref, coalesce, len(b))
			}
		}
	}
	if resp, _, _ := n.get(t, "1.0", true, registry.PeerHeader, "node-denied"); resp == nil || resp.StatusCode == http.StatusOK {
		t.Errorf("tag for node-denied: %v", resp)
	}
}
