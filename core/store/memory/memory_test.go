package memory_test

import (
	"context"
	"testing"

	"github.com/sluice-oci/sluice/core/store/memory"
	"github.com/sluice-oci/sluice/core/store/storetest"
	"github.com/sluice-oci/sluice/internal/testimage"
)

func TestStore_Conformance(t *testing.T) {
	s := memory.New()
	storetest.Conformance(t, storetest.Harness{
		Store:  s,
		Add:    func(_ context.Context, img *testimage.Image) error { return img.AddTo(s) },
		Remove: func(_ context.Context, name string) error { s.Untag(name); return nil },
	})
}
