package abi

import (
	"encoding/json"
	"testing"

	"github.com/sluice-oci/sluice/policy"
)

func TestAppendInput_MatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   policy.Input
	}{
		{"empty", policy.Input{}},
		{"mirrors empty", policy.Input{Action: policy.ActionResolve, Mirrors: []string{}}},
		{"full", policy.Input{
			Action:    policy.ActionServe,
			Reference: &policy.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27", Digest: "sha256:abc", Kind: policy.KindManifest},
			MediaType: "application/vnd.oci.image.index.v1+json",
			Size:      1234,
			Peer:      &policy.Peer{ID: "12D3Koo", Address: "10.0.0.7:5000", TLSSubject: "CN=node-7"},
			Node:      &policy.Node{Name: "node-3", Labels: map[string]string{"z": "1", "a": "2", "m": "<&>"}},
			Source:    &policy.Source{Image: "docker.io/library/nginx:1.27", Pinned: true, Labels: map[string]string{"k": "v"}},
			Upstream:  &policy.Upstream{Endpoint: "https://registry-1.docker.io", Credentials: true},
			Mirrors:   []string{"docker.io", "registry.k8s.io"},
		}},
		{"upstream empty", policy.Input{Action: policy.ActionFetch, Upstream: &policy.Upstream{}}},
		{"empty structs", policy.Input{Reference: &policy.Reference{}, Peer: &policy.Peer{}, Node: &policy.Node{}, Source: &policy.Source{}}},
		{"partial", policy.Input{Reference: &policy.Reference{Digest: "sha256:x", Kind: "blob"}, Size: -5, Node: &policy.Node{Labels: map[string]string{"a": "b"}}, Source: &policy.Source{Labels: map[string]string{"a": "b"}}}},
		{"escapes", policy.Input{Action: "a\"b\\c\n\t\r\b\f\x01\x1f", MediaType: "\u2028\u2029é😀\xff\xfe<>&", Mirrors: []string{"", "\x00"}}},
		{"many labels", policy.Input{Node: &policy.Node{Labels: map[string]string{"1": "", "2": "", "3": "", "4": "", "5": "", "6": "", "7": "", "8": "", "9": "", "10": ""}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkInput(t, &tt.in)
		})
	}
}

func checkInput(t *testing.T, in *policy.Input) {
	t.Helper()
	want, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	if got := AppendInput(nil, in); string(got) != string(want) {
		t.Errorf("AppendInput:\n got %s\nwant %s", got, want)
	}
}

func FuzzAppendInput(f *testing.F) {
	f.Add("resolve", "docker.io", "library/nginx", "latest", "", "CN=node-1", "k", "v", int64(3), true)
	f.Add("\xff", "<>", "\u2028", "\x00", "sha256:1", "", "", "", int64(-1), false)
	f.Fuzz(func(t *testing.T, action, registry, repo, tag, digest, subject, lk, lv string, size int64, pinned bool) {
		in := policy.Input{
			Action:    policy.Action(action),
			Reference: &policy.Reference{Registry: registry, Repository: repo, Tag: tag, Digest: digest},
			Size:      size,
			Peer:      &policy.Peer{TLSSubject: subject},
			Node:      &policy.Node{Name: lv, Labels: map[string]string{lk: lv}},
			Source:    &policy.Source{Pinned: pinned, Image: tag},
			Mirrors:   []string{registry, lk},
		}
		checkInput(t, &in)
	})
}

func BenchmarkAppendInput(b *testing.B) {
	in := policy.Input{
		Action:    policy.ActionResolve,
		Reference: &policy.Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27", Kind: policy.KindManifest},
		MediaType: "application/vnd.oci.image.index.v1+json",
		Mirrors:   []string{"docker.io", "registry.k8s.io"},
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendInput(buf[:0], &in)
	}
}
