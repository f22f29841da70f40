package policy_test

import (
	"context"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/sluice-oci/sluice/policy"
)

func TestSet_Sources(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := writeFile(t, dir, "guard.wasm", "\x00asmfake")
	var closed atomic.Int32
	opener := func(_ context.Context, path string, _ []byte, _ map[string]any) (policy.Engine, error) {
		return &fakeWasm{path: path, closed: &closed}, nil
	}
	tests := []struct {
		name  string
		paths []string
		want  []policy.SourceInfo
	}{
		{name: "shipped", want: []policy.SourceInfo{{Name: "rego"}}},
		{name: "rego and wasm", paths: []string{"../policies", w}, want: []policy.SourceInfo{{Name: "rego"}, {Name: w}}},
		{name: "wasm only", paths: []string{w}, want: []policy.SourceInfo{{Name: w}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, err := policy.Load(t.Context(), tc.paths, policy.WithWasm(opener))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := s.Sources(); !slices.Equal(got, tc.want) {
				t.Errorf("Sources() = %v, want %v", got, tc.want)
			}
			if got := s.Paths(); !slices.Equal(got, tc.paths) {
				t.Errorf("Paths() = %v, want %v", got, tc.paths)
			}
		})
	}
}
