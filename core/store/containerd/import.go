package containerd

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	ctr "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/core/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// Import loads an OCI-layout or docker-save tar, as k3s does for air-gap
// images: all platforms the tar holds (platforms its index names but the
// tar lacks are skipped, as `docker save` from Docker's containerd image
// store and `ctr export` without --all-platforms write one platform under
// a full index), each image pinned (io.cri-containerd.pinned) so garbage
// collection keeps it, and every blob present labelled with
// containerd.io/distribution.source.<registry>=<repository> so the node
// knows which registry the content belongs to and shares it.
//
// Only content whose bytes are in the tar is labelled. An index may name
// children the tar lacks that are already in the store — another image's,
// perhaps a private one: labelling those would let a tarball that holds
// nothing but a digest make private content known as, say, docker.io's.
// Manifests containerd writes itself for a legacy docker-save tar (no
// oci-layout) are not in the tar either; they stay unlabelled and are
// known under the images that reach them (sources.go).
func (s *Store) Import(ctx context.Context, r io.Reader) ([]string, error) {
	ctx = s.ctx(ctx)
	tee, files := watchTar(r)
	imgs, err := s.client.Import(ctx, tee, ctr.WithAllPlatforms(true), ctr.WithSkipMissing(),
		ctr.WithImageLabels(map[string]string{LabelPinned: "pinned"}))
	inTar := files.wait()
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	var names []string
	for _, img := range imgs {
		ref, err := oci.ParseImageName(img.Name)
		if err != nil {
			continue // digest-only names created by the importer
		}
		if err := s.labelSources(ctx, img, ref, inTar); err != nil {
			return names, err
		}
		names = append(names, img.Name)
	}
	return names, nil
}

// tarFiles hashes every regular file of a tar stream while containerd's
// importer reads it (which stores each regular file as a blob under the
// digest of its bytes, whatever its name says), so the import knows which
// blobs the tar really brought.
type tarFiles struct {
	pw   *io.PipeWriter
	done chan struct{}
	seen map[digest.Digest]bool
}

// watchTar returns a reader of r that feeds a tarFiles as it is read.
func watchTar(r io.Reader) (io.Reader, *tarFiles) {
	pr, pw := io.Pipe()
	t := &tarFiles{pw: pw, done: make(chan struct{}), seen: map[digest.Digest]bool{}}
	go t.run(pr)
	return io.TeeReader(r, pw), t
}

func (t *tarFiles) run(pr *io.PipeReader) {
	defer close(t.done)
	// Whatever happens here, keep draining: the importer's reads write
	// to the pipe and must never block on it.
	defer func() { _, _ = io.Copy(io.Discard, pr) }()
	tr := tar.NewReader(pr)
	for {
		hdr, err := tr.Next()
		if err != nil {
			return // the end, or a tar the importer rejects as well
		}
		if hdr.Typeflag != tar.TypeReg { // the reader folds TypeRegA into TypeReg
			continue
		}
		dg := digest.Canonical.Digester()
		if _, err := io.Copy(dg.Hash(), tr); err != nil {
			return
		}
		t.seen[dg.Digest()] = true
	}
}

// wait ends the stream and returns the digests of the files read whole.
func (t *tarFiles) wait() map[digest.Digest]bool {
	_ = t.pw.Close()
	<-t.done
	return t.seen
}

// labelSources labels the content of img that the tar brought (inTar)
// with the distribution source of ref.
func (s *Store) labelSources(ctx context.Context, img images.Image, ref oci.Reference, inTar map[digest.Digest]bool) error {
	cs := s.client.ContentStore()
	key := LabelDistributionSource + ref.Registry
	var descs []ocispec.Descriptor
	walk := images.HandlerFunc(func(ctx context.Context, d ocispec.Descriptor) ([]ocispec.Descriptor, error) {
		descs = append(descs, d)
		children, err := images.Children(ctx, cs, d)
		if err != nil && store.IsManifestOrIndex(d.MediaType) {
			return nil, err
		}
		var present []ocispec.Descriptor
		for _, c := range children {
			if _, err := cs.Info(ctx, c.Digest); err == nil {
				present = append(present, c)
			}
		}
		return present, nil
	})
	if err := images.Walk(ctx, walk, img.Target); err != nil {
		return fmt.Errorf("walk %s: %w", img.Name, err)
	}
	for _, d := range descs {
		if !inTar[d.Digest] {
			continue // already in the store: the tar only named it
		}
		info, err := cs.Info(ctx, d.Digest)
		if err != nil {
			return fmt.Errorf("label %s: %w", d.Digest, err)
		}
		// The label lists every repository the blob came from, comma
		// separated, as containerd's own pull handler writes it.
		cur := info.Labels[key]
		if slices.Contains(strings.Split(cur, ","), ref.Repository) {
			continue
		}
		val := ref.Repository
		if cur != "" {
			val = cur + "," + ref.Repository
		}
		info.Labels = map[string]string{key: val}
		if _, err := cs.Update(ctx, content.Info{Digest: d.Digest, Labels: info.Labels}, "labels."+key); err != nil {
			return fmt.Errorf("label %s: %w", d.Digest, err)
		}
	}
	return nil
}
