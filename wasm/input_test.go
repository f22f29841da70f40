package wasm_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/sdk"
	"github.com/sluice-oci/sluice/wasm/internal/abi"
)

// TestSDKInput_MirrorsPolicyInput checks that sdk.Input has the fields of
// policy.Input with the same JSON names, recursively.
func TestSDKInput_MirrorsPolicyInput(t *testing.T) {
	t.Parallel()
	compareStructs(t, reflect.TypeFor[policy.Input](), reflect.TypeFor[sdk.Input]())
}

func compareStructs(t *testing.T, host, guest reflect.Type) {
	t.Helper()
	guestFields := map[string]reflect.StructField{}
	for f := range guest.Fields() {
		if tag := f.Tag.Get("json"); tag != "-" {
			guestFields[f.Name] = f
		}
	}
	for hf := range host.Fields() {
		gf, ok := guestFields[hf.Name]
		if !ok {
			t.Errorf("sdk.%s lacks field %s", guest.Name(), hf.Name)
			continue
		}
		delete(guestFields, hf.Name)
		if hf.Tag.Get("json") != gf.Tag.Get("json") {
			t.Errorf("%s.%s: json tag %q, sdk has %q", host.Name(), hf.Name, hf.Tag.Get("json"), gf.Tag.Get("json"))
		}
		ht, gt := hf.Type, gf.Type
		if ht.Kind() == reflect.Pointer {
			ht, gt = ht.Elem(), gt.Elem()
		}
		if ht.Kind() == reflect.Struct {
			compareStructs(t, ht, gt)
		} else if ht.Kind() != gt.Kind() {
			t.Errorf("%s.%s: kind %s, sdk has %s", host.Name(), hf.Name, ht.Kind(), gt.Kind())
		}
	}
	for name := range guestFields {
		t.Errorf("sdk.%s has field %s that policy.%s lacks", guest.Name(), name, host.Name())
	}
}

// TestInput_RoundTrip checks that what the host encodes is what the SDK
// decodes.
func TestInput_RoundTrip(t *testing.T) {
	t.Parallel()
	in := policy.Input{
		Action:    policy.ActionServe,
		Reference: &policy.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27", Digest: "sha256:abc", Kind: policy.KindBlob},
		MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
		Size:      1 << 40,
		Peer:      &policy.Peer{ID: "12D3Koo", Address: "10.0.0.7:5000", TLSSubject: `CN=node\,7 <x> & "y"`},
		Node:      &policy.Node{Name: "node-3", Labels: map[string]string{"zone": "a", "é": "\u2028"}},
		Source:    &policy.Source{Image: "docker.io/library/nginx:1.27", Pinned: true},
		Mirrors:   []string{"docker.io", "*"},
	}
	b, err := json.Marshal(in) // byte-identical to the host's encoder (abi tests)
	if err != nil {
		t.Fatal(err)
	}
	got, err := sdk.ParseInput(b)
	if err != nil {
		t.Fatal(err)
	}
	back, _ := json.Marshal(got)
	if string(back) != string(b) {
		t.Errorf("round trip:\n got %s\nwant %s", back, b)
	}
}

// TestCompactInput_MatchesJSON checks that the compact fast path decodes,
// in the SDK, to exactly what the JSON document decodes to.
func TestCompactInput_MatchesJSON(t *testing.T) {
	t.Parallel()
	inputs := map[string]policy.Input{
		"empty":         {},
		"empty mirrors": {Mirrors: []string{}, Reference: &policy.Reference{}},
		"full": {
			Reference: &policy.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27", Digest: "sha256:abc", Kind: policy.KindBlob},
			MediaType: "application/vnd.oci.image.layer.v1.tar+gzip",
			Size:      -1 << 40,
			Peer:      &policy.Peer{ID: "12D3Koo", Address: "10.0.0.7:5000", TLSSubject: `CN=node\,7 <x> & "y"`},
			Node:      &policy.Node{Name: "node-3", Labels: map[string]string{"zone": "a", "é": "\u2028", "": ""}},
			Source:    &policy.Source{Image: "docker.io/library/nginx:1.27", Pinned: true, Labels: map[string]string{"k": "v"}},
			Mirrors:   []string{"docker.io", "*", "", "a", "b", "c"},
		},
		"invalid utf-8": {
			Reference: &policy.Reference{Registry: "bad\xff\xfeutf8\xe2\x82", Tag: "\xed\xa0\x80"},
			Node:      &policy.Node{Labels: map[string]string{"\xff": "\xfe"}},
			Mirrors:   []string{"\x80"},
		},
		"empty node and source": {Node: &policy.Node{Labels: map[string]string{}}, Source: &policy.Source{}},
		"source lists": {Source: &policy.Source{Labels: map[string]string{"a": "b"},
			Registries: []string{"docker.io", "registry.internal"}, Repositories: []string{"docker.io/library/alpine", "registry.internal/secret/app", "\xff"}}},
		"source registries only": {Source: &policy.Source{Registries: []string{"docker.io"}}, Mirrors: []string{"docker.io"}},
		"upstream after source lists": {Source: &policy.Source{Registries: []string{"docker.io"}, Repositories: []string{"docker.io/x"}},
			Upstream: &policy.Upstream{Endpoint: "https://registry-1.docker.io", Credentials: true}, Mirrors: []string{"*"}},
		"upstream without source": {Upstream: &policy.Upstream{Endpoint: "http://127.0.0.1:5000"}, Node: &policy.Node{Labels: map[string]string{"a": "b"}}},
		"upstream empty":          {Upstream: &policy.Upstream{}},
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, action := range []policy.Action{policy.ActionServe, "x\xff"} {
				in := in
				in.Action = action
				want, err := sdk.ParseInput(abi.AppendInput(nil, &in))
				if err != nil {
					t.Fatal(err)
				}
				got, err := sdk.ParseCompactInput(abi.AppendCompact([]byte("junk before"), action, &in)[len("junk before"):])
				if err != nil {
					t.Fatal(err)
				}
				if !reflect.DeepEqual(got, want) {
					t.Errorf("compact decodes to\n%#v\nJSON to\n%#v", got, want)
				}
			}
		})
	}
}
