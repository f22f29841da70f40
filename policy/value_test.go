package policy

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

func sampleInputs() []Input {
	return []Input{
		{Action: ActionResolve},
		{Action: ActionServe, Mirrors: []string{}},
		{Action: ActionAdvertise, Reference: &Reference{}, Peer: &Peer{}, Node: &Node{}, Source: &Source{}, Mirrors: []string{"*"}},
		{
			Action:    ActionServe,
			Reference: &Reference{Registry: "docker.io", Repository: "library/nginx", Tag: "1.27", Digest: "sha256:aa", Kind: KindManifest},
			MediaType: "application/vnd.oci.image.index.v1+json", Size: 1234,
			Peer:    &Peer{ID: "12D3Koo", Address: "127.0.0.2:5000", TLSSubject: "CN=node-7"},
			Node:    &Node{Name: "node-3", Labels: map[string]string{"b": "2", "a": "1"}},
			Source:  &Source{Image: "docker.io/library/nginx:1.27", Pinned: true, Labels: map[string]string{"z": "", "y": "\"q\"\n\\\x01é"}},
			Mirrors: []string{"docker.io", "registry.k8s.io"},
		},
	}
}

// checkInput asserts the cache key is the JSON encoding/json writes and the
// ast input equals that JSON parsed, so Rego sees what Wasm sees.
func checkInput(t *testing.T, in Input) {
	t.Helper()
	want, err := json.Marshal(in)
	if err != nil {
		t.Fatal(err)
	}
	key := appendKey(nil, &in)
	if !json.Valid(key) {
		t.Fatalf("key is not JSON: %s", key)
	}
	var a, b any
	if err := json.Unmarshal(want, &a); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(key, &b); err != nil {
		t.Fatal(err)
	}
	aj, _ := json.Marshal(a)
	bj, _ := json.Marshal(b)
	if !bytes.Equal(aj, bj) {
		t.Errorf("key\n %s\nwant\n %s", key, want)
	}
	if !strings.ContainsAny(string(want), "<>&") && !bytes.Equal(key, want) {
		t.Errorf("key not canonical:\n %s\nwant\n %s", key, want)
	}
	var doc any
	if err := util.UnmarshalJSON(want, &doc); err != nil {
		t.Fatal(err)
	}
	wantVal, err := ast.InterfaceToValue(doc)
	if err != nil {
		t.Fatal(err)
	}
	got := newInputKeys().inputValue(&in, nil, fAll)
	if got.Compare(wantVal) != 0 {
		t.Errorf("ast input\n %v\nwant\n %v", got, wantVal)
	}
	checkPruned(t, &in, got)
}

// checkPruned: a document built for some fields has the value of full at
// every path of those fields, and nothing at the paths of the others.
func checkPruned(t *testing.T, in *Input, full ast.Value) {
	t.Helper()
	for _, keep := range []fieldMask{fAction, fAction | fRegistry | fTag | fMirrors, fAction | fPeer | fNodeLabels,
		fAction | fSourceRegistries | fDigest | fUpstreamCredentials, fAll &^ fMirrors, fAll &^ fSource} {
		pruned := newInputKeys().inputValue(in, nil, keep)
		for _, f := range inputFields {
			ref := ast.MustParseRef("input." + f.path)[1:]
			want, werr := full.Find(ref)
			got, gerr := pruned.Find(ref)
			switch {
			case keep&f.bit == 0 && gerr == nil:
				t.Errorf("keep %b: %s is built: %v", keep, f.path, got)
			case keep&f.bit != 0 && (werr != nil) != (gerr != nil):
				t.Errorf("keep %b: %s: %v (%v), want %v (%v)", keep, f.path, got, gerr, want, werr)
			case keep&f.bit != 0 && werr == nil && got.Compare(want) != 0:
				t.Errorf("keep %b: %s = %v, want %v", keep, f.path, got, want)
			}
		}
	}
}

func TestInputValue_MatchesJSON(t *testing.T) {
	t.Parallel()
	for _, in := range sampleInputs() {
		checkInput(t, in)
	}
}

// FuzzInput checks that any input, however odd its strings, gives a valid
// canonical cache key and the same document to Rego as its JSON.
func FuzzInput(f *testing.F) {
	f.Add("docker.io", "library/nginx", "latest", "", "peer", "k", "v", int64(0), true)
	f.Add("", "", "", "sha256:aa", "", "", "", int64(-1), false)
	f.Add("a\"b", "\x00", "\xff", "<&>", "\u2028", "é", "\\", int64(1<<40), true)
	f.Fuzz(func(t *testing.T, reg, repo, tag, digest, peer, lk, lv string, size int64, pinned bool) {
		in := Input{
			Action:    ActionResolve,
			Reference: &Reference{Registry: reg, Repository: repo, Tag: tag, Digest: digest},
			Size:      size,
			Peer:      &Peer{ID: peer},
			Source:    &Source{Pinned: pinned, Labels: map[string]string{lk: lv}},
			Mirrors:   []string{reg, "*"},
		}
		key := appendKey(nil, &in)
		if !json.Valid(key) {
			t.Fatalf("key is not JSON: %q", key)
		}
		want, err := json.Marshal(in)
		if err != nil {
			t.Fatal(err)
		}
		var a, b any
		if err := json.Unmarshal(want, &a); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(key, &b); err != nil {
			t.Fatal(err)
		}
		aj, _ := json.Marshal(a)
		bj, _ := json.Marshal(b)
		if !bytes.Equal(aj, bj) {
			t.Errorf("key %s, want %s", key, want)
		}
	})
}

func TestCache_Bounded(t *testing.T) {
	t.Parallel()
	c := newCache(4)
	for i := range 10 {
		c.put(string(rune('a'+i)), cacheEntry{d: Decision{Allow: i%2 == 0}})
	}
	if n := c.len(); n > 4 {
		t.Errorf("len %d > 4", n)
	}
	if e, ok := c.get([]byte("j")); !ok || e.d.Allow {
		t.Errorf("latest entry: %+v %v", e, ok)
	}
	if _, ok := c.get([]byte("a")); ok {
		t.Error("oldest entry still cached")
	}
	var nilCache *cache
	nilCache.put("x", cacheEntry{})
	if _, ok := nilCache.get([]byte("x")); ok {
		t.Error("disabled cache hit")
	}
}
