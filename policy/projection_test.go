package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// inputLeaves lists the JSON paths of Input's leaves (maps and slices are
// leaves), as inputFields must.
func inputLeaves(t reflect.Type, prefix string) []string {
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		p := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, inputLeaves(ft, p+".")...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func TestInputFields_CoverStruct(t *testing.T) {
	t.Parallel()
	var table []string
	for _, f := range inputFields {
		table = append(table, f.path)
	}
	got := inputLeaves(reflect.TypeFor[Input](), "")
	slices.Sort(got)
	slices.Sort(table)
	if !slices.Equal(got, table) {
		t.Errorf("Input leaves %v\ninputFields  %v", got, table)
	}
}

func TestProjection_AppendKey(t *testing.T) {
	t.Parallel()
	for _, in := range sampleInputs() {
		// Every field keyed: the canonical JSON, byte for byte.
		if got, want := appendKeyFields(nil, &in, fAll, 0), appendKey(nil, &in); !bytes.Equal(got, want) {
			t.Errorf("all fields:\n got %s\nwant %s", got, want)
		}
		for _, m := range []struct{ value, presence fieldMask }{
			{fAction, 0}, {fAction | fDigest, 0}, {fAction, fDigest | fTag | fPeerID}, {fAction | fSize | fSourcePinned | fNodeLabels, fMediaType},
		} {
			if key := appendKeyFields(nil, &in, m.value, m.presence); !json.Valid(key) {
				t.Errorf("%b/%b: not JSON: %s", m.value, m.presence, key)
			}
		}
	}
	in := Input{Action: ActionServe, Reference: &Reference{Digest: "sha256:aa", Registry: "r"}, Peer: &Peer{ID: "p"}}
	got := string(appendKeyFields(nil, &in, fAction|fRegistry, fDigest|fTag))
	if want := `{"action":"serve","reference":{"registry":"r","digest":true}}`; got != want {
		t.Errorf("key = %s, want %s", got, want)
	}
}

func TestProjection_Shipped(t *testing.T) {
	t.Parallel()
	s, err := Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := s.rev.Load().proj.String()
	if want := "action reference.registry reference.repository reference.tag reference.digest source.registries upstream.endpoint upstream.credentials mirrors"; got != want {
		t.Errorf("projection = %q, want %q", got, want)
	}
	// An allowing decision is keyed without what only the messages of a
	// refusal read (the repository, the tag and digest values).
	got = s.rev.Load().dproj.String()
	if want := "action reference.registry reference.tag reference.digest? source.registries upstream.credentials mirrors"; got != want {
		t.Errorf("decision projection = %q, want %q", got, want)
	}
}

type fakeEngine struct{}

func (fakeEngine) Decide(_ context.Context, _ Action, _ Input) (Decision, error) {
	return Decision{Allow: true}, nil
}

func TestProjection_OffWithWasm(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	w := filepath.Join(dir, "x.wasm")
	if err := os.WriteFile(w, []byte("\x00asm"), 0o644); err != nil {
		t.Fatal(err)
	}
	open := func(context.Context, string, []byte, map[string]any) (Engine, error) { return fakeEngine{}, nil }
	s, err := Load(t.Context(), []string{"../policies", w}, WithWasm(open))
	if err != nil {
		t.Fatal(err)
	}
	if p := s.rev.Load().proj; p != nil {
		t.Errorf("projection with a Wasm source: %v", p)
	}
}
