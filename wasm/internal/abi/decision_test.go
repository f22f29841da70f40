package abi

import (
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/sluice-oci/sluice/policy"
)

func TestParseDecision(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    policy.Decision
		wantErr bool
	}{
		{in: `{"allow":true}`, want: policy.Decision{Allow: true}},
		{in: ` { "allow" : false , "reasons" : [ "a" , "b\"\u00e9\ud83d\ude00" ] } `, want: policy.Decision{Reasons: []string{"a", "b\"é😀"}}},
		{in: `{"reasons":null,"allow":true}`, want: policy.Decision{Allow: true}},
		{in: `{"allow":true,"reasons":[]}`, want: policy.Decision{Allow: true}},
		{in: `{"allow":true,"ttl":-1.5e3,"x":{"y":[1,null,true,{}],"z":""}}`, want: policy.Decision{Allow: true}},
		{in: `{"allo\u0077":true}`, want: policy.Decision{Allow: true}},
		{in: `{"allow":true,"reasons":["\ud800x"]}`, want: policy.Decision{Allow: true, Reasons: []string{"\ufffdx"}}},
		{in: ``, wantErr: true},
		{in: `{}`, wantErr: true},
		{in: `{"allow":1}`, wantErr: true},
		{in: `{"allow":true,"allow":false}`, wantErr: true},
		{in: `{"Allow":true}`, wantErr: true},
		{in: `{"allow":true}x`, wantErr: true},
		{in: `{"allow":true,}`, wantErr: true},
		{in: `{"allow":true,"reasons":[1]}`, wantErr: true},
		{in: `{"allow":true,"reasons":"no"}`, wantErr: true},
		{in: `{"allow":tru}`, wantErr: true},
		{in: `{"allow":true,"x":01}`, wantErr: true},
		{in: `{"allow":true,"x":"` + "\x01" + `"}`, wantErr: true},
		{in: `{"allow":true,"x":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}`, wantErr: true},
		{in: `[true]`, wantErr: true},
		{in: "\x00\x00\x00", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseDecision([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrMalformed) {
					t.Fatalf("ParseDecision(%q) = %+v, %v; want ErrMalformed", tt.in, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDecision(%q): %v", tt.in, err)
			}
			if got.Allow != tt.want.Allow || !slices.Equal(got.Reasons, tt.want.Reasons) {
				t.Errorf("ParseDecision(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

// FuzzParseDecision checks that the parser never panics and accepts only
// what encoding/json decodes to the same decision.
func FuzzParseDecision(f *testing.F) {
	for _, s := range []string{`{"allow":true}`, `{"allow":false,"reasons":["x","\u0041"]}`, `{"allow":true,"k":[1,{"a":null}]}`, `{"ALLOW":true}`, `{"allow":true,"reasons":["\ud83d\ude00\udc00"]}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := ParseDecision(b)
		if err != nil {
			return
		}
		var want policy.Decision
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatalf("ParseDecision accepted %q, encoding/json refused: %v", b, err)
		}
		if got.Allow != want.Allow || !slices.Equal(got.Reasons, want.Reasons) {
			t.Fatalf("ParseDecision(%q) = %+v, encoding/json %+v", b, got, want)
		}
	})
}

func BenchmarkParseDecision(b *testing.B) {
	in := []byte(`{"allow":false,"reasons":["registry \"quay.io\" is not mirrored"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDecision(in); err != nil {
			b.Fatal(err)
		}
	}
}
