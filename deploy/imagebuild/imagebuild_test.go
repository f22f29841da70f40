package imagebuild

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

const testRef = "ghcr.io/sluice-oci/sluice:0.1.0-test"

var (
	helloOnce sync.Once
	helloBins map[string]string
	helloErr  error
)

// hello builds testdata/hello for linux/amd64 and linux/arm64 once per test
// binary, statically.
func hello(t *testing.T) map[string]string {
	t.Helper()
	helloOnce.Do(func() {
		dir, err := os.MkdirTemp("", "imagebuild-hello")
		if err != nil {
			helloErr = err
			return
		}
		helloBins = map[string]string{}
		for _, arch := range []string{"amd64", "arm64"} {
			out := filepath.Join(dir, arch, "sluice")
			cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./testdata/hello")
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+arch)
			if b, err := cmd.CombinedOutput(); err != nil {
				helloErr = err
				helloBins = nil
				t.Logf("%s", b)
				return
			}
			helloBins[arch] = out
		}
	})
	if helloErr != nil {
		t.Fatalf("build testdata/hello: %v", helloErr)
	}
	return helloBins
}

func platforms(bins map[string]string) []Platform {
	return []Platform{{OS: "linux", Arch: "amd64", Binary: bins["amd64"]}, {OS: "linux", Arch: "arm64", Binary: bins["arm64"]}}
}

// buildTar builds the index and its layout tar.
func buildTar(t *testing.T, plats []Platform, created time.Time) (v1.Hash, []byte) {
	t.Helper()
	idx, err := Index(plats, created)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteLayoutTar(&buf, idx, testRef, created); err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d, buf.Bytes()
}

// copyBinaries copies the binaries elsewhere with another mtime and mode,
// as another checkout or build would leave them.
func copyBinaries(t *testing.T, bins map[string]string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for arch, p := range bins {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		np := filepath.Join(t.TempDir(), "a-longer", "path", "sluice")
		if err := os.MkdirAll(filepath.Dir(np), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(np, b, 0o700); err != nil {
			t.Fatal(err)
		}
		when := time.Date(2031, 5, 6, 7, 8, 9, 0, time.UTC)
		if err := os.Chtimes(np, when, when); err != nil {
			t.Fatal(err)
		}
		out[arch] = np
	}
	return out
}

func TestIndex_Reproducible(t *testing.T) {
	bins := hello(t)
	epoch := time.Unix(0, 0)
	want, wantTar := buildTar(t, platforms(bins), epoch)
	for _, tc := range []struct {
		name    string
		plats   []Platform
		created time.Time
		same    bool
	}{
		{"same inputs", platforms(bins), epoch, true},
		{"copies elsewhere with other mtimes and modes", platforms(copyBinaries(t, bins)), epoch, true},
		{"another time zone", platforms(bins), epoch.In(time.FixedZone("X", 5*3600)), true},
		{"another SOURCE_DATE_EPOCH", platforms(bins), time.Unix(1700000000, 0), false},
		{"one platform", platforms(bins)[:1], epoch, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, gotTar := buildTar(t, tc.plats, tc.created)
			if (got == want) != tc.same {
				t.Fatalf("digest %s, first build %s: want same=%v", got, want, tc.same)
			}
			if tc.same && !bytes.Equal(gotTar, wantTar) {
				t.Fatal("same index digest but the layout tars differ")
			}
		})
	}
}

func TestIndex_Contents(t *testing.T) {
	bins := hello(t)
	created := time.Unix(1700000000, 0).UTC()
	idx, err := Index(platforms(bins), created)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	if im.MediaType != types.OCIImageIndex || len(im.Manifests) != 2 {
		t.Fatalf("index %s with %d manifests: want an OCI index of 2", im.MediaType, len(im.Manifests))
	}
	for i, arch := range []string{"amd64", "arm64"} {
		d := im.Manifests[i]
		if d.Platform == nil || d.Platform.OS != "linux" || d.Platform.Architecture != arch || d.MediaType != types.OCIManifestSchema1 {
			t.Fatalf("manifest %d: %+v: want linux/%s OCI manifest", i, d, arch)
		}
		img, err := idx.Image(d.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.OS != "linux" || cfg.Architecture != arch || !cfg.Created.Time.Equal(created) ||
			strings.Join(cfg.Config.Entrypoint, " ") != BinaryPath || cfg.Config.User != "65532:65532" {
			t.Errorf("%s config: os %s arch %s created %s entrypoint %q user %q", arch, cfg.OS, cfg.Architecture, cfg.Created, cfg.Config.Entrypoint, cfg.Config.User)
		}
		layers, err := img.Layers()
		if err != nil || len(layers) != 1 {
			t.Fatalf("%s: %d layers (%v), want 1", arch, len(layers), err)
		}
		rc, err := layers[0].Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(bins[arch])
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(rc)
		var names []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, h.Name)
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			if h.Name != "sluice" || h.Mode != 0o755 || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || !h.ModTime.Equal(created) || !bytes.Equal(b, want) {
				t.Errorf("%s layer entry %s mode %o uid %d gid %d uname %q mtime %s: want the binary as root 0755 at the fixed time", arch, h.Name, h.Mode, h.Uid, h.Gid, h.Uname, h.ModTime)
			}
		}
		rc.Close()
		if len(names) != 1 {
			t.Errorf("%s layer holds %q: want /sluice only (no shell)", arch, names)
		}
	}
}

func TestImage_RejectsBinaries(t *testing.T) {
	bins := hello(t)
	text := filepath.Join(t.TempDir(), "script")
	if err := os.WriteFile(text, []byte("#!/bin/sh\necho hi\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		p    Platform
		want string
	}{
		{"wrong architecture", Platform{OS: "linux", Arch: "amd64", Binary: bins["arm64"]}, "built for EM_AARCH64, not linux/amd64"},
		{"dynamically linked", Platform{OS: "linux", Arch: "amd64", Binary: "/bin/ls"}, "dynamically linked"},
		{"not ELF", Platform{OS: "linux", Arch: "amd64", Binary: text}, "not an ELF executable"},
		{"not linux", Platform{OS: "windows", Arch: "amd64", Binary: bins["amd64"]}, "only linux"},
		{"missing", Platform{OS: "linux", Arch: "amd64", Binary: filepath.Join(t.TempDir(), "nope")}, "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Image(tc.p, time.Unix(0, 0))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := ParsePlatform("linux/amd64"); err == nil {
		t.Error("ParsePlatform without a binary: no error")
	}
	var buf bytes.Buffer
	idx, err := Index(platforms(bins)[:1], time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteLayoutTar(&buf, idx, "sluice", time.Unix(0, 0)); err == nil {
		t.Error("WriteLayoutTar with a name without registry and tag: no error")
	}
}

// TestWriteLayoutTar_Imports: the tar imports into a real containerd with
// ctr as an operator would, and with `sluice import` into containerd and
// into the embedded OCI-layout store, under the image's name and digest.
func TestWriteLayoutTar_Imports(t *testing.T) {
	bins := hello(t)
	digest, b := buildTar(t, platforms(bins), time.Unix(0, 0))
	tarPath := filepath.Join(t.TempDir(), "sluice-image.tar")
	if err := os.WriteFile(tarPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	c := startContainerd(t)

	c.Ctr(ctx, t, "images", "import", "--all-platforms", "--no-unpack", tarPath)
	ls := c.Ctr(ctx, t, "images", "ls")
	if !strings.Contains(ls, testRef) || !strings.Contains(ls, digest.String()) {
		t.Fatalf("ctr images ls after import:\n%s\nwant %s at %s", ls, testRef, digest)
	}
	// Every blob of both platforms is in the content store.
	blobs := c.Ctr(ctx, t, "content", "ls", "--quiet")
	for _, d := range allBlobs(t, platforms(bins)) {
		if !strings.Contains(blobs, d.String()) {
			t.Errorf("blob %s not in containerd's content store after import", d)
		}
	}

	sluice := binary(t, "sluice")
	for _, tc := range []struct {
		name  string
		store string
	}{
		{"containerd", "containerd://" + c.socket},
		{"oci", "oci:" + filepath.Join(t.TempDir(), "oci")},
	} {
		t.Run("sluice import "+tc.name, func(t *testing.T) {
			out, err := exec.CommandContext(ctx, sluice, "import", "--store", tc.store, "--containerd-namespace", "sluice-test", tarPath).CombinedOutput()
			if err != nil {
				t.Fatalf("sluice import: %v\n%s", err, out)
			}
			if !strings.Contains(string(out), "imported "+testRef) {
				t.Fatalf("sluice import printed %q, want imported %s", out, testRef)
			}
			if dir, ok := strings.CutPrefix(tc.store, "oci:"); ok {
				var index v1.IndexManifest
				ib, err := os.ReadFile(filepath.Join(dir, "index.json"))
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(ib, &index); err != nil {
					t.Fatal(err)
				}
				if len(index.Manifests) != 1 || index.Manifests[0].Digest != digest {
					t.Fatalf("oci store index.json %s: want %s", ib, digest)
				}
			}
		})
	}
}

// allBlobs lists the digests of the index, its manifests, configs and
// layers.
func allBlobs(t *testing.T, plats []Platform) []v1.Hash {
	t.Helper()
	idx, err := Index(plats, time.Unix(0, 0))
	if err != nil {
		t.Fatal(err)
	}
	d, err := idx.Digest()
	if err != nil {
		t.Fatal(err)
	}
	out := []v1.Hash{d}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range im.Manifests {
		img, err := idx.Image(m.Digest)
		if err != nil {
			t.Fatal(err)
		}
		cd, err := img.ConfigName()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Digest, cd)
		layers, err := img.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			ld, err := l.Digest()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, ld)
		}
	}
	return out
}
