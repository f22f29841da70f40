package store_test

import (
	"slices"
	"testing"
	"unsafe"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
)

func TestSourceIndex_Add(t *testing.T) {
	a, b := digest.FromString("a"), digest.FromString("b")
	type add struct {
		d              digest.Digest
		registry, repo string
	}
	for _, tc := range []struct {
		name             string
		adds             []add
		regs, repos      []string // of a
		sharedWithB      bool
		unknownB, delete bool
	}{
		{name: "one name", adds: []add{{a, "docker.io", "library/nginx"}},
			regs: []string{"docker.io"}, repos: []string{"docker.io/library/nginx"}, unknownB: true},
		{name: "registry alone", adds: []add{{a, "ghcr.io", ""}},
			regs: []string{"ghcr.io"}, unknownB: true},
		{name: "sorted and once", adds: []add{{a, "quay.io", "x/y"}, {a, "docker.io", "z"}, {a, "quay.io", "x/y"}, {a, "docker.io", "a"}},
			regs: []string{"docker.io", "quay.io"}, repos: []string{"docker.io/a", "docker.io/z", "quay.io/x/y"}, unknownB: true},
		{name: "same names in another order share the lists", adds: []add{{a, "docker.io", "x"}, {a, "quay.io", "y"}, {b, "quay.io", "y"}, {b, "docker.io", "x"}},
			regs: []string{"docker.io", "quay.io"}, repos: []string{"docker.io/x", "quay.io/y"}, sharedWithB: true},
		{name: "adding to one leaves the other", adds: []add{{a, "docker.io", "x"}, {b, "docker.io", "x"}, {b, "quay.io", "y"}},
			regs: []string{"docker.io"}, repos: []string{"docker.io/x"}},
		{name: "deleted", adds: []add{{a, "docker.io", "x"}}, delete: true, unknownB: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			x := store.NewSourceIndex()
			for _, ad := range tc.adds {
				x.Add(ad.d, ad.registry, ad.repo)
			}
			if tc.delete {
				x.Delete(a)
			}
			regs, repos := x.Lookup(a)
			if !slices.Equal(regs, tc.regs) || !slices.Equal(repos, tc.repos) {
				t.Errorf("Lookup(a) = %q %q, want %q %q", regs, repos, tc.regs, tc.repos)
			}
			if cap(regs) != len(regs) || cap(repos) != len(repos) {
				t.Errorf("Lookup(a) capacities %d, %d exceed lengths: an append would write shared lists", cap(regs), cap(repos))
			}
			bregs, brepos := x.Lookup(b)
			if tc.unknownB && (bregs != nil || brepos != nil) {
				t.Errorf("Lookup(b) = %q %q, want nothing", bregs, brepos)
			}
			if shared := regs != nil && unsafe.SliceData(regs) == unsafe.SliceData(bregs) && unsafe.SliceData(repos) == unsafe.SliceData(brepos); shared != tc.sharedWithB {
				t.Errorf("a and b share lists = %v, want %v", shared, tc.sharedWithB)
			}
		})
	}
}

// TestSourceIndex_Shared: content reached by the same names costs a map
// slot, not a copy of the names.
func TestSourceIndex_Shared(t *testing.T) {
	x := store.NewSourceIndex()
	var ds []digest.Digest
	for i := range 1000 {
		d := digest.FromBytes([]byte{byte(i), byte(i >> 8)})
		ds = append(ds, d)
		x.Add(d, "docker.io", "scale/img")
	}
	allocs := testing.AllocsPerRun(10, func() {
		for _, d := range ds {
			x.Add(d, "docker.io", "scale/img")
			x.Lookup(d)
		}
	})
	if allocs != 0 {
		t.Errorf("re-adding and looking up 1000 digests under a known name allocates %v times, want 0", allocs)
	}
}
