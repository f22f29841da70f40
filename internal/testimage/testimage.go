// Package testimage builds container images offline and deterministically
// for tests and the demo: single- or multi-platform, N layers of given
// sizes, written as an OCI layout, an import tarball for `ctr images
// import`, or into an in-memory store. Nothing is downloaded.
package testimage

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Spec describes an image to build.
type Spec struct {
	// Name is the full image name, e.g. "docker.io/library/demo:1.0".
	Name string
	// Platforms like "linux/amd64"; one platform builds a plain manifest
	// unless Index is set, several build an index.
	Platforms []string
	// Index forces an index even for one platform.
	Index bool
	// LayerSizes are the sizes of the file each layer holds.
	LayerSizes []int64
	// Seed makes the content; the same Spec always gives the same digests.
	Seed uint64
}

// Image is a built image: its target descriptor and every blob.
type Image struct {
	Name   string
	Target ocispec.Descriptor
	// Manifests are the per-platform manifest descriptors.
	Manifests []ocispec.Descriptor
	// Layers are the layer descriptors of every platform.
	Layers []ocispec.Descriptor
	Blobs  map[digest.Digest][]byte
	Types  map[digest.Digest]string
}

// Build builds the image described by spec.
func Build(spec Spec) (*Image, error) {
	if spec.Name == "" {
		return nil, fmt.Errorf("testimage: empty name")
	}
	plats := spec.Platforms
	if len(plats) == 0 {
		plats = []string{"linux/amd64"}
	}
	img := &Image{Name: spec.Name, Blobs: map[digest.Digest][]byte{}, Types: map[digest.Digest]string{}}
	for i, p := range plats {
		os, arch, ok := strings.Cut(p, "/")
		if !ok {
			return nil, fmt.Errorf("testimage: platform %q is not os/arch", p)
		}
		md, err := img.buildManifest(spec, uint64(i), ocispec.Platform{OS: os, Architecture: arch})
		if err != nil {
			return nil, err
		}
		img.Manifests = append(img.Manifests, md)
	}
	if len(plats) == 1 && !spec.Index {
		img.Target = img.Manifests[0]
		img.Target.Platform = nil
		return img, nil
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: img.Manifests}
	img.Target = img.add(ocispec.MediaTypeImageIndex, mustJSON(idx))
	return img, nil
}

func (img *Image) buildManifest(spec Spec, platform uint64, p ocispec.Platform) (ocispec.Descriptor, error) {
	rng := rand.New(rand.NewChaCha8(seed(spec.Seed, platform)))
	var layers []ocispec.Descriptor
	var diffIDs []digest.Digest
	for i, size := range spec.LayerSizes {
		b, err := layerTar(rng, fmt.Sprintf("layer-%d.bin", i), size)
		if err != nil {
			return ocispec.Descriptor{}, err
		}
		d := img.add(ocispec.MediaTypeImageLayer, b)
		layers = append(layers, d)
		diffIDs = append(diffIDs, d.Digest)
	}
	img.Layers = append(img.Layers, layers...)
	cfg := ocispec.Image{
		Created:  ptr(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
		Platform: p,
		Config:   ocispec.ImageConfig{Cmd: []string{"/layer-0.bin"}, Labels: map[string]string{"org.example.testimage": spec.Name}},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: diffIDs},
	}
	cd := img.add(ocispec.MediaTypeImageConfig, mustJSON(cfg))
	m := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest, Config: cd, Layers: layers}
	if layers == nil {
		m.Layers = []ocispec.Descriptor{}
	}
	md := img.add(ocispec.MediaTypeImageManifest, mustJSON(m))
	md.Platform = &p
	return md, nil
}

func (img *Image) add(mt string, b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	img.Blobs[d] = b
	img.Types[d] = mt
	return ocispec.Descriptor{MediaType: mt, Digest: d, Size: int64(len(b))}
}

// Digests returns every digest of the image, sorted.
func (img *Image) Digests() []digest.Digest {
	out := make([]digest.Digest, 0, len(img.Blobs))
	for d := range img.Blobs {
		out = append(out, d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// Largest returns the largest layer descriptor.
func (img *Image) Largest() ocispec.Descriptor {
	var best ocispec.Descriptor
	for _, l := range img.Layers {
		if l.Size > best.Size {
			best = l
		}
	}
	return best
}

func layerTar(rng *rand.Rand, name string, size int64) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(int(size) + 2048)
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, ModTime: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	chunk := make([]byte, 64<<10)
	for left := size; left > 0; {
		n := min(left, int64(len(chunk)))
		fill(rng, chunk[:n])
		if _, err := tw.Write(chunk[:n]); err != nil {
			return nil, fmt.Errorf("testimage: %w", err)
		}
		left -= n
	}
	if err := tw.Close(); err != nil {
		return nil, fmt.Errorf("testimage: %w", err)
	}
	return buf.Bytes(), nil
}

func fill(rng *rand.Rand, b []byte) {
	for i := 0; i+8 <= len(b); i += 8 {
		v := rng.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	for i := len(b) &^ 7; i < len(b); i++ {
		b[i] = byte(rng.Uint32())
	}
}

func seed(s, platform uint64) [32]byte {
	var out [32]byte
	for i := range 8 {
		out[i] = byte(s >> (8 * i))
		out[8+i] = byte(platform >> (8 * i))
	}
	copy(out[16:], "sluice-testimage")
	return out
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only our own fixed types are encoded
	}
	return b
}

func ptr[T any](v T) *T { return &v }

// Children returns the descriptors an index or manifest (b, described by
// d) refers to; nil for other content.
func (img *Image) Children(d ocispec.Descriptor, b []byte) []ocispec.Descriptor {
	switch d.MediaType {
	case ocispec.MediaTypeImageIndex:
		var idx ocispec.Index
		if json.Unmarshal(b, &idx) == nil {
			return idx.Manifests
		}
	case ocispec.MediaTypeImageManifest:
		var m ocispec.Manifest
		if json.Unmarshal(b, &m) == nil {
			return append([]ocispec.Descriptor{m.Config}, m.Layers...)
		}
	}
	return nil
}
