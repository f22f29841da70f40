package policy_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/sluice-oci/sluice/policy"
)

// allowAllBut is a module set that allows every action, and denies
// resolve of repository repo.
func allowAllBut(repo string) map[string][]byte {
	mods := map[string][]byte{}
	for _, a := range policy.Actions {
		mods["b/"+string(a)+".rego"] = []byte("package sluice." + string(a) + "\nallow := true\n")
	}
	mods["b/resolve.rego"] = []byte("package sluice.resolve\nallow := true\ndeny contains sprintf(\"bundle refuses %s\", [input.reference.repository]) if input.reference.repository == \"" + repo + "\"\n")
	return mods
}

func TestSet_SetExternal(t *testing.T) {
	t.Parallel()
	s, err := policy.Load(t.Context(), nil, policy.WithExternal("bundles"))
	if err != nil {
		t.Fatal(err)
	}
	in := policy.Input{Reference: &policy.Reference{Registry: "docker.io", Repository: "org/app", Tag: "1.0", Kind: policy.KindManifest}}
	other := policy.Input{Reference: &policy.Reference{Registry: "docker.io", Repository: "org/other", Tag: "1.0", Kind: policy.KindManifest}}
	latest := policy.Input{Reference: &policy.Reference{Registry: "docker.io", Repository: "org/other", Tag: "latest", Kind: policy.KindManifest}}

	// Before the first load: a deny that names the source.
	if d := decide(t, s, policy.ActionResolve, in); d.Allow || !strings.Contains(strings.Join(d.Reasons, ";"), "bundles is not loaded yet") {
		t.Fatalf("waiting source: %+v", d)
	}
	if src := s.Sources(); len(src) != 2 || src[1].Name != "bundles" || src[1].Revision != "(not loaded yet)" {
		t.Fatalf("sources while waiting: %+v", src)
	}

	if err := s.SetExternal(t.Context(), policy.External{Revision: "b=1", Modules: allowAllBut("org/app")}); err != nil {
		t.Fatal(err)
	}
	rev1 := s.Revision()
	if d := decide(t, s, policy.ActionResolve, in); d.Allow || !strings.Contains(strings.Join(d.Reasons, ";"), "bundle refuses org/app") {
		t.Errorf("bundle deny: %+v", d)
	}
	if d := decide(t, s, policy.ActionResolve, other); !d.Allow {
		t.Errorf("both allow: %+v", d)
	}
	// AND of sources: the bundle allows :latest, the shipped policy does not.
	if d := decide(t, s, policy.ActionResolve, latest); d.Allow {
		t.Errorf("a bundle widened the local policy: %+v", d)
	}

	bad := []struct {
		name string
		ext  policy.External
		code string
		msg  string
	}{
		{"compile error", policy.External{Revision: "b=2", Modules: map[string][]byte{"b/x.rego": []byte("package sluice.resolve\nallow := \n")}}, policy.CodeCompile, "b/x.rego:"},
		{"undefined action", policy.External{Revision: "b=3", Modules: map[string][]byte{"b/x.rego": []byte("package sluice.resolve\nallow := true\n")}}, policy.CodeCompile, "sluice.advertise"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := s.SetExternal(t.Context(), tc.ext)
			if policy.ErrorCode(err) != tc.code || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("err = %v, want %s mentioning %q", err, tc.code, tc.msg)
			}
			if s.Revision() != rev1 {
				t.Error("a refused bundle replaced the revision")
			}
			if d := decide(t, s, policy.ActionResolve, in); d.Allow {
				t.Errorf("last good no longer decides: %+v", d)
			}
			if s.LastError() == nil || s.Sources()[1].LastError == "" || s.Sources()[1].Revision != "b=1" {
				t.Errorf("refusal not visible: LastError %v, sources %+v", s.LastError(), s.Sources())
			}
		})
	}

	// A good update replaces it and clears the error.
	if err := s.SetExternal(t.Context(), policy.External{Revision: "b=4", Modules: allowAllBut("org/other")}); err != nil {
		t.Fatal(err)
	}
	if d := decide(t, s, policy.ActionResolve, in); !d.Allow {
		t.Errorf("after update: %+v", d)
	}
	if d := decide(t, s, policy.ActionResolve, other); d.Allow {
		t.Errorf("after update: %+v", d)
	}
	if s.LastError() != nil || s.Revision() == rev1 {
		t.Errorf("LastError %v, revision %s", s.LastError(), s.Revision())
	}
}

func TestSet_SetExternalWithoutOption(t *testing.T) {
	t.Parallel()
	s, err := policy.Load(t.Context(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetExternal(t.Context(), policy.External{Modules: allowAllBut("x")}); err == nil {
		t.Fatal("SetExternal without WithExternal succeeded")
	}
}

type recorder struct {
	mu   sync.Mutex
	recs []policy.DecisionRecord
}

func (r *recorder) LogDecision(_ context.Context, rec policy.DecisionRecord) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
}

func TestSet_DecisionLogger(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	s, err := policy.Load(t.Context(), nil, policy.WithDecisionLogger(rec), policy.WithNode(policy.Node{Name: "n1"}))
	if err != nil {
		t.Fatal(err)
	}
	in := policy.Input{Reference: &policy.Reference{Registry: "docker.io", Repository: "org/app", Tag: "latest", Kind: policy.KindManifest},
		Peer: &policy.Peer{ID: "p", Address: "10.0.0.7:5000"}}
	d1 := decide(t, s, policy.ActionResolve, in)
	d2 := decide(t, s, policy.ActionResolve, in) // a cache hit is a decision too
	if len(rec.recs) != 2 {
		t.Fatalf("%d records, want 2", len(rec.recs))
	}
	for i, r := range rec.recs {
		want := []policy.Decision{d1, d2}[i]
		if r.Action != policy.ActionResolve || r.Input.Action != policy.ActionResolve || r.Input.Node == nil || r.Input.Node.Name != "n1" ||
			r.Input.Mirrors == nil || r.Input.Peer.Address != "10.0.0.7:5000" || r.Revision != s.Revision() ||
			r.Decision.Allow != want.Allow || strings.Join(r.Decision.Reasons, ";") != strings.Join(want.Reasons, ";") || r.Start.IsZero() {
			t.Errorf("record %d: %+v", i, r)
		}
	}
	if rec.recs[0].Cached || !rec.recs[1].Cached {
		t.Errorf("cached flags: %v %v", rec.recs[0].Cached, rec.recs[1].Cached)
	}
}
