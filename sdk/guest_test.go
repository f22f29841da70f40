package sdk

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestGuest_Decide(t *testing.T) {
	t.Parallel()
	var g guest
	if _, err := g.decide([]byte("resolve"), benchDoc); err == nil {
		t.Fatal("decide without a handler succeeded")
	}
	var seen Input
	g.handler = func(in Input) Decision {
		seen = in
		if in.Settings.EnableLatest {
			return Allow()
		}
		return Deny("no \"latest\"\n", "\xff")
	}
	if err := g.configure([]byte(`{"sluice":{"settings":{"enable_latest":"true","digest_only":true}},"x":1}`)); err != nil {
		t.Fatal(err)
	}
	out, err := g.decide([]byte("advertise"), benchDoc)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"allow":false,"reasons":["no \"latest\"\n","\ufffd"]}`; string(out) != want {
		t.Errorf("decide = %s, want %s", out, want)
	}
	if seen.Action != ActionAdvertise || !seen.Settings.DigestOnly || seen.Settings.EnableLatest || seen.Reference.Tag != "1.27" {
		t.Errorf("policy saw %+v", seen)
	}
	if v, ok := seen.Lookup("x"); !ok || v != 1.0 {
		t.Errorf("Lookup(x) = %v, %v", v, ok)
	}
	if err := g.configure([]byte(`[`)); err == nil {
		t.Error("configure accepted a broken document")
	}

	g.handler = func(Input) Decision { panic("boom") }
	if _, err := g.decide([]byte("serve"), benchDoc); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("decide with a panicking policy = %v", err)
	}
}

func TestDecision_AppendJSON(t *testing.T) {
	t.Parallel()
	for _, d := range []Decision{Allow(), Deny(), Deny("a", "b\"\\\t\x00é"), All(Allow(), Deny("x"), Deny("y"))} {
		var back Decision
		if err := json.Unmarshal(d.AppendJSON(nil), &back); err != nil {
			t.Fatalf("%+v: %v", d, err)
		}
		if back.Allow != d.Allow || strings.Join(back.Reasons, "|") != strings.Join(d.Reasons, "|") {
			t.Errorf("round trip of %+v = %+v", d, back)
		}
	}
}
