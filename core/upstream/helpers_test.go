package upstream_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/testimage"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

const repo = "library/app"

// parse parses registries.yaml text, as a node would read it.
func parse(t *testing.T, yaml string) *config.Registries {
	t.Helper()
	reg, _, err := config.ParseRegistries("registries.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("ParseRegistries: %v\n%s", err, yaml)
	}
	return reg
}

// image builds a test image: one platform, layers of the given sizes.
func image(t *testing.T, seed uint64, sizes ...int64) *testimage.Image {
	t.Helper()
	img, err := testimage.Build(testimage.Spec{Name: "example.com/" + repo + ":1", LayerSizes: sizes, Seed: seed})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t *testing.T, r *upstreamtest.Registry, tag string, img *testimage.Image) {
	t.Helper()
	if err := r.Push(t.Context(), repo, tag, img); err != nil {
		t.Fatalf("push: %v", err)
	}
}

// ref is repo:tag (or @digest) on registry.
func ref(registry, tag string, d digest.Digest) oci.Reference {
	return oci.Reference{Registry: registry, Repository: repo, Tag: tag, Digest: d}
}

// readBlob opens and reads a blob whole.
func readBlob(t *testing.T, c *upstream.Client, r oci.Reference, d digest.Digest, size int64) ([]byte, error) {
	t.Helper()
	b, err := c.Blob(t.Context(), r, d, size)
	if err != nil {
		return nil, err
	}
	defer b.Close()
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, b); err != nil {
		return buf.Bytes(), err
	}
	if b.Descriptor.Size != int64(buf.Len()) {
		return nil, fmt.Errorf("descriptor size %d, read %d", b.Descriptor.Size, buf.Len())
	}
	return buf.Bytes(), nil
}

// checkErr compares err with what a table row wants: nil, a sentinel, or
// any error (errAny).
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("error %v, want none", err)
	case want == nil:
	case err == nil:
		t.Fatalf("no error, want %v", want)
	case want == errAny:
		if errors.Is(err, store.ErrNotFound) {
			t.Fatalf("error %v is ErrNotFound; want another error", err)
		}
	case !errors.Is(err, want):
		t.Fatalf("error %v, want %v", err, want)
	}
}

func yamlf(format string, args ...any) string {
	return strings.TrimLeft(fmt.Sprintf(format, args...), "\n")
}

// named is a registries.yaml that lists host under mirrors: the client
// refuses loopback hosts registries.yaml does not name, and every test
// upstream is on loopback.
func named(t *testing.T, host string) *config.Registries {
	t.Helper()
	return parse(t, yamlf("mirrors:\n  %q:\n", host))
}
