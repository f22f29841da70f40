package ocidir_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/core/store/storetest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

func TestStore_Conformance(t *testing.T) {
	s, err := ocidir.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Conformance(t, storetest.Harness{
		Store:  s,
		Add:    func(ctx context.Context, img *testimage.Image) error { return img.WriteLayout(ctx, s) },
		Remove: func(_ context.Context, name string) error { return s.RemoveImage(name) },
	})
}

func TestStore_ImportTar(t *testing.T) {
	s, err := ocidir.Open(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	storetest.Conformance(t, storetest.Harness{
		Store: s,
		Add: func(ctx context.Context, img *testimage.Image) error {
			var buf bytes.Buffer
			if err := img.WriteTar(&buf); err != nil {
				return err
			}
			names, err := s.Import(ctx, &buf)
			if err != nil {
				return err
			}
			if len(names) != 1 || names[0] != img.Name {
				t.Errorf("Import names = %v, want [%s]", names, img.Name)
			}
			return nil
		},
	})
}
