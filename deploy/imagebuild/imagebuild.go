// Package imagebuild assembles sluice's OCI image the way ko does, without
// Docker: one layer holding the static binary at /sluice onto an empty
// image, an index of the platforms, and an OCI-layout tar that
// `ctr images import` and `sluice import` read. Every timestamp is fixed
// and nothing of the build machine (paths, owners, mtimes) gets in, so the
// same binaries give the same digest.
package imagebuild

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const (
	// BinaryPath is where the binary lives in the image.
	BinaryPath = "/sluice"
	// User is the image's user: distroless's nonroot.
	User = "65532:65532"
)

// Platform is one binary of the index.
type Platform struct {
	OS, Arch string
	// Binary is the path of a static executable for OS/Arch.
	Binary string
}

// ParsePlatform parses "linux/amd64=path".
func ParsePlatform(s string) (Platform, error) {
	plat, path, ok := strings.Cut(s, "=")
	osName, arch, ok2 := strings.Cut(plat, "/")
	if !ok || !ok2 || osName == "" || arch == "" || path == "" {
		return Platform{}, fmt.Errorf("platform %q: want OS/ARCH=BINARY, e.g. linux/amd64=bin/sluice", s)
	}
	return Platform{OS: osName, Arch: arch, Binary: path}, nil
}

// elfMachines are the ELF machines of the architectures sluice ships.
var elfMachines = map[string]elf.Machine{
	"amd64": elf.EM_X86_64, "arm64": elf.EM_AARCH64, "arm": elf.EM_ARM,
	"386": elf.EM_386, "ppc64le": elf.EM_PPC64, "s390x": elf.EM_S390, "riscv64": elf.EM_RISCV,
}

// checkBinary refuses what would not run in an image without a libc: a
// file that is not an ELF executable of the platform, or one that needs a
// dynamic loader (built with cgo).
func checkBinary(p Platform, b []byte) error {
	if p.OS != "linux" {
		return fmt.Errorf("%s: OS %q: only linux images are built", p.Binary, p.OS)
	}
	want, ok := elfMachines[p.Arch]
	if !ok {
		return fmt.Errorf("%s: unknown architecture %q", p.Binary, p.Arch)
	}
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%s: not an ELF executable: %w", p.Binary, err)
	}
	defer f.Close()
	if f.Machine != want {
		return fmt.Errorf("%s: built for %s, not %s/%s", p.Binary, f.Machine, p.OS, p.Arch)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return fmt.Errorf("%s: dynamically linked (needs a loader the image lacks): build with CGO_ENABLED=0", p.Binary)
		}
	}
	return nil
}

// layerTar is the single layer: /sluice, root-owned, mode 0755, mtime
// created.
func layerTar(bin []byte, created time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{
		Typeflag: tar.TypeReg,
		Name:     strings.TrimPrefix(BinaryPath, "/"),
		Mode:     0o755,
		Size:     int64(len(bin)),
		ModTime:  created,
		Format:   tar.FormatPAX,
	}
	if err := tw.WriteHeader(hdr); err != nil {
		return nil, err
	}
	if _, err := tw.Write(bin); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Image builds the image of one platform.
func Image(p Platform, created time.Time) (v1.Image, error) {
	bin, err := os.ReadFile(p.Binary)
	if err != nil {
		return nil, err
	}
	if err := checkBinary(p, bin); err != nil {
		return nil, err
	}
	lt, err := layerTar(bin, created)
	if err != nil {
		return nil, fmt.Errorf("%s: layer: %w", p.Binary, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(lt)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, fmt.Errorf("%s: layer: %w", p.Binary, err)
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	cfg, err := base.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = p.OS, p.Arch
	cfg.Config.Entrypoint = []string{BinaryPath}
	cfg.Config.Cmd = nil
	cfg.Config.User = User
	cfg.Config.WorkingDir = "/"
	cfg.Config.Labels = map[string]string{"org.opencontainers.image.source": "https://github.com/sluice-oci/sluice"}
	img, err := mutate.ConfigFile(base, cfg)
	if err != nil {
		return nil, err
	}
	img, err = mutate.Append(img, mutate.Addendum{
		Layer:     layer,
		MediaType: types.OCILayer,
		History:   v1.History{Created: v1.Time{Time: created}, CreatedBy: "imagebuild: " + BinaryPath, Comment: "static binary"},
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.Binary, err)
	}
	return mutate.CreatedAt(img, v1.Time{Time: created})
}

// Index builds the multi-platform image index, created at created (pass
// SOURCE_DATE_EPOCH, or the zero epoch).
func Index(platforms []Platform, created time.Time) (v1.ImageIndex, error) {
	if len(platforms) == 0 {
		return nil, fmt.Errorf("no platforms")
	}
	created = created.UTC()
	idx := mutate.IndexMediaType(empty.Index, types.OCIImageIndex)
	seen := map[string]bool{}
	for _, p := range platforms {
		key := p.OS + "/" + p.Arch
		if seen[key] {
			return nil, fmt.Errorf("platform %s twice", key)
		}
		seen[key] = true
		img, err := Image(p, created)
		if err != nil {
			return nil, err
		}
		idx = mutate.AppendManifests(idx, mutate.IndexAddendum{
			Add:        img,
			Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: p.OS, Architecture: p.Arch}},
		})
	}
	return idx, nil
}
