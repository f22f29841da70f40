package store

import (
	"slices"
	"strings"

	"github.com/opencontainers/go-digest"
)

// SourceIndex maps content to the registries and repositories of the
// image names that reach it. Content reached through the same names shares
// one pair of lists, so an image of 1,000 layers costs a map slot per
// layer rather than a set of names per layer (see RATIONALE.md "Why are
// content sources interned?"). The zero value is not usable: call
// NewSourceIndex. A SourceIndex is not safe for concurrent writes; callers
// guard it as they guard the rest of their state.
type SourceIndex struct {
	byDigest map[digest.Digest]*sourceLists
	interned map[string]*sourceLists     // canonical form → the shared lists
	steps    map[sourceStep]*sourceLists // memoised Add: lists plus a name
}

// sourceLists are the sorted registries and "registry/repository" names of
// some content. They are shared and never modified once built.
type sourceLists struct {
	registries, repositories []string
}

type sourceStep struct {
	from                 *sourceLists
	registry, repository string
}

// NewSourceIndex returns an empty index.
func NewSourceIndex() *SourceIndex {
	return &SourceIndex{
		byDigest: map[digest.Digest]*sourceLists{},
		interned: map[string]*sourceLists{},
		steps:    map[sourceStep]*sourceLists{},
	}
}

// Add records that d is known under registry/repository (repository may be
// empty: the registry alone is known).
func (x *SourceIndex) Add(d digest.Digest, registry, repository string) {
	from := x.byDigest[d]
	step := sourceStep{from, registry, repository}
	to, ok := x.steps[step]
	if !ok {
		to = x.intern(from.with(registry, repository))
		x.steps[step] = to
	}
	x.byDigest[d] = to
}

// Delete forgets d.
func (x *SourceIndex) Delete(d digest.Digest) { delete(x.byDigest, d) }

// Lookup returns the sorted registries and "registry/repository" names d
// is known under; both are nil when d is unknown. The slices are shared
// with other content: read them, never modify them (appending is safe:
// their capacity is their length).
func (x *SourceIndex) Lookup(d digest.Digest) (registries, repositories []string) {
	if x == nil {
		return nil, nil
	}
	l := x.byDigest[d]
	if l == nil {
		return nil, nil
	}
	return l.registries, l.repositories
}

// Len returns how many digests the index knows.
func (x *SourceIndex) Len() int {
	if x == nil {
		return 0
	}
	return len(x.byDigest)
}

// with returns l plus registry/repository as new lists (l is nil for none).
func (l *sourceLists) with(registry, repository string) sourceLists {
	var out sourceLists
	if l != nil {
		out = *l
	}
	out.registries = insertSorted(out.registries, registry)
	if repository != "" {
		out.repositories = insertSorted(out.repositories, registry+"/"+repository)
	}
	return out
}

// insertSorted returns s with v in order, as a new slice unless v is
// already there (s is shared and must not be written).
func insertSorted(s []string, v string) []string {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	out := make([]string, 0, len(s)+1)
	out = append(out, s[:i]...)
	out = append(out, v)
	return append(out, s[i:]...)
}

// intern returns the shared lists equal to l.
func (x *SourceIndex) intern(l sourceLists) *sourceLists {
	// Names are references: they hold neither '\n' nor '\x00'.
	key := strings.Join(l.registries, "\n") + "\x00" + strings.Join(l.repositories, "\n")
	if p, ok := x.interned[key]; ok {
		return p
	}
	p := &sourceLists{registries: slices.Clip(l.registries), repositories: slices.Clip(l.repositories)}
	x.interned[key] = p
	return p
}
