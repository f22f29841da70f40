package e2e

import (
	"context"
	"testing"
)

// TestLocal_ContainerdTagsResolvedThroughPeersOnly: a node's sluice never
// answers its own containerd from that containerd's store. A tag that moved
// (node2 holds app:stable at a newer digest than node1 has) is resolved
// through the peer, so node1's containerd gets the new digest; :latest,
// which the shipped resolve policy keeps from peers, is a 404 at once, so
// with the upstream closed the pull fails instead of being answered with
// the digest node1 already has.
func TestLocal_ContainerdTagsResolvedThroughPeersOnly(t *testing.T) {
	e := newEnv(t, 2)
	ctx := t.Context()

	// No subtests: the harness fails through the parent test.
	{ // a moved tag comes from the peer
		old := e.image("app:stable", 31, 1<<20)
		moved := e.image("app:stable", 32, 1<<20)
		e.importTo(0, old)
		delete(e.tars, moved.Name) // same name, other content: not the cached tarball
		e.importTo(1, moved)
		if err := e.pull(ctx, 0, moved.Name); err != nil {
			t.Fatal(err)
		}
		e.assertHas(0, moved) // the name now points at node2's digest
	}
	{ // :latest is not answered from node1's own store
		img := e.image("app:latest", 33, 1<<20)
		e.importKeys(0, img, len(img.Blobs)) // :latest itself is not advertised
		pctx, cancel := context.WithTimeout(ctx, failTimeout)
		defer cancel()
		if err := e.pull(pctx, 0, img.Name); err == nil {
			t.Fatal("node1's containerd re-pulled :latest with the upstream closed: sluice answered it from its own store")
		}
		if got := e.denials(0, "resolve"); got < 1 {
			t.Fatalf("no resolve denial for :latest on node1 (%.0f)", got)
		}
	}
}
