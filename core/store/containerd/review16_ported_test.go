package containerd

import (
	"fmt"
	"slices"
	"testing"
)

// TestReview16_PlainBoundFailsOpen: the bound on hosts named without a
// port fails open. Once maxPortedHosts port-less registries were noted
// (image names a workload chooses: one pull per host under a wildcard
// domain), a host named both with and without a port loses its bare
// candidate, and a label that may stand for the unmirrored bare registry
// is read as the mirrored registry with a port only: content pulled from
// the private registry.local (443) is served to peers under a mirrors
// list naming registry.local:5000. The bound on m fails closed (the label
// stays as written); this one must too.
func TestReview16_PlainBoundFailsOpen(t *testing.T) {
	t.Parallel()
	var p portedHosts
	var imgs []string
	for i := range maxPortedHosts {
		r := fmt.Sprintf("h%04d.evil.example:5000", i) // sorted before registry.local, as containerd lists
		p.note(r)
		imgs = append(imgs, r)
	}
	imgs = append(imgs, "registry.local:5000", "registry.local") // the private registry's images, named without a port
	regs, _ := sources(map[string]string{LabelDistributionSource + "registry.local": "private/app"}, func(r string) []string { return portlessLabel(r, imgs) })
	if !slices.Contains(regs, "registry.local") {
		t.Fatalf("registries %v: the bare registry.local (a candidate of its own label) was dropped; content of an unmirrored registry reads as registry.local:5000's only", regs)
	}
}

// TestReview16_DefaultPortSpellingWithdrawsSharing: "ghcr.io:443/org/app:1"
// is a valid pull from ghcr.io itself, and any workload may spell its image
// so. Once one such name was seen on a node (never forgotten until a
// restart), every blob labelled ghcr.io there, pulled by everyone else as
// ghcr.io/..., reads as [ghcr.io ghcr.io:443], and the mirrors policy
// (mirrors: [ghcr.io]) refuses all of it to every peer: one pod spec turns
// sharing of a whole mirrored registry off on a node. The same registry
// spelt with its default port is not a second candidate.
func TestReview16_DefaultPortSpellingWithdrawsSharing(t *testing.T) {
	t.Parallel()
	var p portedHosts
	p.note("ghcr.io")
	p.note("ghcr.io:443")
	if p.has("ghcr.io") {
		t.Fatal("ghcr.io:443 (the default port spelt out) marks ghcr.io's labels for the image walk")
	}
	regs, _ := sources(map[string]string{LabelDistributionSource + "ghcr.io": "org/base"}, func(r string) []string { return []string{r} })
	if !slices.Equal(regs, []string{"ghcr.io"}) {
		t.Fatalf("registries %v, want [ghcr.io]: a mirrors list naming ghcr.io now refuses the node's ghcr.io content", regs)
	}
}
