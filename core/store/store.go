// Package store defines the read-only content store a sluice node serves
// from: tags resolved to descriptors, content addressed by digest, the list
// of images, and a stream of changes. Backends: containerd, an OCI
// image-layout directory (the embedded default) and memory (tests).
package store

import (
	"context"
	"errors"
	"io"
	"os"
	"slices"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ErrNotFound is returned when a tag or digest is not in the store.
var ErrNotFound = errors.New("not found")

// Image is a named image in the store.
type Image struct {
	// Name is the full reference, e.g. "docker.io/library/nginx:1.27".
	Name string
	// Registry, Repository and Tag are the parts of Name ("docker.io",
	// "library/nginx", "1.27"). Tag is empty for digest-only names.
	Registry   string
	Repository string
	Tag        string
	// Target is the descriptor of the index or manifest the name points at.
	Target ocispec.Descriptor
	// Pinned is true when the image is protected from garbage collection
	// (io.cri-containerd.pinned=pinned), as air-gap imports are.
	Pinned bool
	// Labels are the image's labels (containerd) or annotations (oci).
	Labels map[string]string
}

// Info describes content in the store.
type Info struct {
	Digest digest.Digest
	Size   int64
	// MediaType is the stored media type when the backend knows it; empty
	// otherwise (containerd's content store does not keep it).
	MediaType string
	// Registries are the registries the content was pulled or imported
	// under (case-folded, docker.io for Docker Hub): containerd's
	// containerd.io/distribution.source.<registry> labels, or the names of
	// the images that reach it in the embedded and memory stores. Empty
	// when unknown. Registries and Repositories may be shared with other
	// content: read them, never modify them.
	Registries []string
	// Repositories are the full repository names ("registry/repository")
	// the content was pulled or imported under, from the same sources.
	Repositories []string
	// Labels are the content labels, when the backend has them.
	Labels map[string]string
}

// Content is open content. Reads are positional, so one Content can serve
// several ranges at once.
type Content interface {
	io.ReaderAt
	io.Closer
	Size() int64
}

// Filer is implemented by Content backed by a regular file, so the server
// can hand the file to sendfile(2) instead of copying through user space.
type Filer interface {
	OSFile() *os.File
}

// EventType says what changed.
type EventType int

// Event types.
const (
	EventImageCreate EventType = iota + 1
	EventImageUpdate
	EventImageDelete
	EventContentCreate
	EventContentDelete
	// EventResync says events may have been missed (the backend's event
	// stream broke and was re-established): consumers rescan everything.
	EventResync
)

func (t EventType) String() string {
	switch t {
	case EventImageCreate:
		return "image-create"
	case EventImageUpdate:
		return "image-update"
	case EventImageDelete:
		return "image-delete"
	case EventContentCreate:
		return "content-create"
	case EventContentDelete:
		return "content-delete"
	case EventResync:
		return "resync"
	}
	return "unknown"
}

// Event is a change in the store. Image events carry Image (for deletes
// only Name is set); content events carry Digest.
type Event struct {
	Type   EventType
	Image  Image
	Digest digest.Digest
}

// Store is the read-only view of a node's content.
type Store interface {
	// Resolve returns the descriptor the tag registry/repository:tag
	// points at, or ErrNotFound.
	Resolve(ctx context.Context, registry, repository, tag string) (ocispec.Descriptor, error)
	// Stat describes content by digest, or returns ErrNotFound.
	Stat(ctx context.Context, dgst digest.Digest) (Info, error)
	// Open opens content by digest for reading, or returns ErrNotFound.
	Open(ctx context.Context, dgst digest.Digest) (Content, error)
	// Images lists the named images.
	Images(ctx context.Context) ([]Image, error)
}

// Subscriber is implemented by stores that report changes. The channel is
// closed when ctx is done or the backend stops.
type Subscriber interface {
	Subscribe(ctx context.Context) (<-chan Event, error)
}

// Namer is implemented by stores that have a descriptive name for logs.
type Namer interface {
	Name() string
}

// SourceSet collects the registries and repositories content is known
// under; the zero value is empty.
type SourceSet map[string]map[string]bool // registry → repositories

// Add records registry/repository (repository may be empty: the registry
// alone is known).
func (s SourceSet) Add(registry, repository string) {
	if s[registry] == nil {
		s[registry] = map[string]bool{}
	}
	if repository != "" {
		s[registry][repository] = true
	}
}

// Lists returns the sorted registries and "registry/repository" names.
func (s SourceSet) Lists() (registries, repositories []string) {
	for r, repos := range s {
		registries = append(registries, r)
		for repo := range repos {
			repositories = append(repositories, r+"/"+repo)
		}
	}
	slices.Sort(registries)
	slices.Sort(repositories)
	return registries, repositories
}
