package testimage

import (
	"archive/tar"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/store/ocidir"
)

// nameAnnotations are set on the index.json entry so that `ctr images
// import` and sluice's oci store both find the image name.
func (img *Image) entry() ocispec.Descriptor {
	d := img.Target
	d.Annotations = map[string]string{
		ocidir.AnnotationImageName: img.Name,
		ocidir.AnnotationRefName:   img.Name,
	}
	return d
}

// WriteTar writes the image as an OCI-layout tarball that `ctr images
// import` and `sluice import` accept.
func (img *Image) WriteTar(w io.Writer) error {
	return img.writeTar(w, img.Digests(), nil)
}

// Export describes a partial export for WriteExport.
type Export struct {
	// Platforms whose content the tar holds, like "linux/amd64".
	Platforms []string
	// DockerManifest adds the docker-save manifest.json that Docker
	// writes beside index.json.
	DockerManifest bool
}

// WriteExport writes the tarball a single-platform export gives:
// index.json names the whole image (its index lists every platform), but
// only the index and the chosen platforms' manifests, configs and layers
// are in the tar. That is what `ctr export` without --all-platforms and
// `docker save` from Docker's containerd image store (DockerManifest)
// write.
func (img *Image) WriteExport(w io.Writer, e Export) error {
	platforms := e.Platforms
	ds, err := img.PlatformDigests(platforms...)
	if err != nil {
		return err
	}
	if !e.DockerManifest {
		return img.writeTar(w, ds, nil)
	}
	type dockerManifest struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var dm []dockerManifest
	for _, m := range img.Manifests {
		if !slices.Contains(platforms, platformString(m.Platform)) {
			continue
		}
		e := dockerManifest{RepoTags: []string{img.Name}}
		for i, c := range img.Children(m, img.Blobs[m.Digest]) {
			if i == 0 {
				e.Config = "blobs/sha256/" + c.Digest.Encoded()
			} else {
				e.Layers = append(e.Layers, "blobs/sha256/"+c.Digest.Encoded())
			}
		}
		dm = append(dm, e)
	}
	return img.writeTar(w, ds, mustJSON(dm))
}

// PlatformDigests returns the target and the content of the named
// platforms only, in the order Digests lists them.
func (img *Image) PlatformDigests(platforms ...string) ([]digest.Digest, error) {
	keep := map[digest.Digest]bool{img.Target.Digest: true}
	for _, p := range platforms {
		found := false
		for _, m := range img.Manifests {
			if platformString(m.Platform) != p {
				continue
			}
			found = true
			keep[m.Digest] = true
			for _, c := range img.Children(m, img.Blobs[m.Digest]) {
				keep[c.Digest] = true
			}
		}
		if !found {
			return nil, fmt.Errorf("testimage: no platform %q in %s", p, img.Name)
		}
	}
	var out []digest.Digest
	for _, d := range img.Digests() {
		if keep[d] {
			out = append(out, d)
		}
	}
	return out, nil
}

func platformString(p *ocispec.Platform) string {
	if p == nil {
		return ""
	}
	return p.OS + "/" + p.Architecture
}

// writeTar writes the layout with the blobs ds and, when dockerManifest
// is set, a docker-save manifest.json.
func (img *Image) writeTar(w io.Writer, ds []digest.Digest, dockerManifest []byte) error {
	tw := tar.NewWriter(w)
	mt := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	file := func(name string, b []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: mt, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err := tw.Write(b)
		return err
	}
	dir := func(name string) error {
		return tw.WriteHeader(&tar.Header{Name: name, Mode: 0o755, ModTime: mt, Typeflag: tar.TypeDir})
	}
	if err := file(ocispec.ImageLayoutFile, mustJSON(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})); err != nil {
		return fmt.Errorf("testimage tar: %w", err)
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{img.entry()}}
	if err := file(ocispec.ImageIndexFile, mustJSON(idx)); err != nil {
		return fmt.Errorf("testimage tar: %w", err)
	}
	if err := dir("blobs/"); err != nil {
		return fmt.Errorf("testimage tar: %w", err)
	}
	if err := dir("blobs/sha256/"); err != nil {
		return fmt.Errorf("testimage tar: %w", err)
	}
	for _, d := range ds {
		if err := file("blobs/sha256/"+d.Encoded(), img.Blobs[d]); err != nil {
			return fmt.Errorf("testimage tar: %w", err)
		}
	}
	if dockerManifest != nil {
		if err := file("manifest.json", dockerManifest); err != nil {
			return fmt.Errorf("testimage tar: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("testimage tar: %w", err)
	}
	return nil
}

// WriteTarFile writes the import tarball to path.
func (img *Image) WriteTarFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("testimage: %w", err)
	}
	if err := img.WriteTar(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// WriteLayout adds the image to the OCI layout store s.
func (img *Image) WriteLayout(_ context.Context, s *ocidir.Store) error {
	for _, d := range img.Digests() {
		p, err := s.BlobPath(d)
		if err != nil {
			return err
		}
		if _, err := os.Stat(p); err == nil {
			continue
		}
		tmp := filepath.Join(filepath.Dir(p), ".tmp-"+d.Encoded())
		if err := os.WriteFile(tmp, img.Blobs[d], 0o444); err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
		if err := os.Rename(tmp, p); err != nil {
			return fmt.Errorf("testimage: %w", err)
		}
	}
	return s.SetImages(img.entry())
}

// AddTo adds the image to a memory store, content labelled with registry.
func (img *Image) AddTo(s *memory.Store, registries ...string) error {
	for _, d := range img.Digests() {
		s.Add(img.Types[d], img.Blobs[d], registries...)
	}
	return s.Tag(img.Name, img.Target)
}
