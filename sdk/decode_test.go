package sdk

import (
	"encoding/json"
	"reflect"
	"testing"
)

var benchDoc = []byte(`{"action":"resolve","reference":{"registry":"docker.io","repository":"library/nginx","tag":"1.27","kind":"manifest"},"mirrors":["docker.io"]}`)

func TestParseInput(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		doc     string
		wantErr bool
	}{
		{name: "typical", doc: string(benchDoc)},
		{name: "full", doc: `{"action":"serve","reference":{"registry":"r","repository":"a/b","tag":"t","digest":"sha256:1","kind":"blob"},"media_type":"m","size":-12,"peer":{"id":"p","address":"1.2.3.4:5","tls_subject":"CN=x\\,y"},"node":{"name":"n","labels":{"a":"b","c":""}},"source":{"image":"i","pinned":true,"labels":{"k":"v"}},"mirrors":["a","b","c","d","e","f"]}`},
		{name: "nulls and unknown", doc: ` { "action" : null , "reference" : null , "extra" : {"x":[1,2.5e3,true,null,{"y":"z"}]}, "peer":{"new":1}, "mirrors" : null } `},
		{name: "escapes", doc: `{"action":"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00\ud800x","mirrors":["é","\u2028"]}`},
		{name: "empty", doc: `{}`},
		{name: "empty mirrors", doc: `{"mirrors":[]}`},
		{name: "invalid utf8", doc: "{\"action\":\"\xff\"}"},
		{name: "trailing", doc: `{} x`, wantErr: true},
		{name: "not object", doc: `[]`, wantErr: true},
		{name: "bad size", doc: `{"size":"1"}`, wantErr: true},
		{name: "control char", doc: "{\"action\":\"\x01\"}", wantErr: true},
		{name: "unterminated", doc: `{"action":"x`, wantErr: true},
		{name: "bad escape", doc: `{"action":"\x"}`, wantErr: true},
		{name: "trailing comma", doc: `{"action":"x",}`, wantErr: true},
		{name: "deep", doc: `{"x":` + deep(70) + `}`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ParseInput([]byte(tt.doc))
			if tt.wantErr {
				if err == nil {
					t.Fatalf("ParseInput(%s) = %+v, want error", tt.doc, got)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseInput(%s): %v", tt.doc, err)
			}
			var want Input
			if err := json.Unmarshal([]byte(tt.doc), &want); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseInput(%s)\n got %+v\nwant %+v (encoding/json)", tt.doc, got, want)
			}
		})
	}
}

func deep(n int) string {
	s := ""
	for range n {
		s += "["
	}
	for range n {
		s += "]"
	}
	return s
}

// FuzzParseInput checks that ParseInput never panics on any bytes, and
// decodes the canonical encoding of every input encoding/json accepts to
// the same value (encoding/json also matches keys case-insensitively,
// which the host's documents never need).
func FuzzParseInput(f *testing.F) {
	f.Add(benchDoc)
	f.Add([]byte(`{"node":{"labels":{"a":"\ud800"}},"source":{"pinned":false},"size":7}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseInput(b)
		var want Input
		if json.Unmarshal(b, &want) != nil {
			return
		}
		canonical, err := json.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := ParseInput(canonical)
		if err != nil {
			t.Fatalf("ParseInput(%s): %v", canonical, err)
		}
		if g, _ := json.Marshal(got); string(g) != string(canonical) {
			t.Fatalf("ParseInput(%s) = %s", canonical, g)
		}
	})
}

func BenchmarkParseInput(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseInput(benchDoc); err != nil {
			b.Fatal(err)
		}
	}
}
