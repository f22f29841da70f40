package sdk

import (
	"encoding/binary"
	"testing"
)

// compactDoc builds a compact input: mirrors "docker.io" and a reference
// to registry "docker.io" (the two strings share their bytes).
func compactDoc() []byte {
	b := make([]byte, compactHeaderLen+8)
	binary.LittleEndian.PutUint32(b, compactVersion)
	binary.LittleEndian.PutUint32(b[4:], compactReference|compactMirrors)
	binary.LittleEndian.PutUint32(b[16:], 1)
	off := uint32(len(b))
	b = append(b, "docker.io"...)
	for _, slot := range []int{1, compactStrings} {
		binary.LittleEndian.PutUint32(b[compactStringsOff+8*slot:], off)
		binary.LittleEndian.PutUint32(b[compactStringsOff+8*slot+4:], 9)
	}
	return b
}

func TestParseCompactInput(t *testing.T) {
	t.Parallel()
	in, err := ParseCompactInput(compactDoc())
	if err != nil {
		t.Fatal(err)
	}
	if in.Reference == nil || in.Reference.Registry != "docker.io" || len(in.Mirrors) != 1 || in.Mirrors[0] != "docker.io" || in.Peer != nil {
		t.Errorf("ParseCompactInput = %+v", in)
	}
	bad := compactDoc()
	binary.LittleEndian.PutUint32(bad[compactStringsOff+12:], 1000) // registry length past the end
	if _, err := ParseCompactInput(bad); err == nil {
		t.Error("a string outside the buffer was accepted")
	}
	if _, err := ParseCompactInput(compactDoc()[:50]); err == nil {
		t.Error("a truncated header was accepted")
	}
}

// TestParseCompactInput_StringBeforeTheStrings checks a string whose
// bytes lie before the string bytes (here: inside the entry table), which
// the layout allows and the host never writes: the decoder copies only
// the bytes after the table, and the whole buffer for such a string.
func TestParseCompactInput_StringBeforeTheStrings(t *testing.T) {
	t.Parallel()
	doc := compactDoc()
	at := uint32(compactStringsOff + 8) // the registry's own entry
	binary.LittleEndian.PutUint32(doc[compactStringsOff+8*3:], at)
	binary.LittleEndian.PutUint32(doc[compactStringsOff+8*3+4:], 8)
	in, err := ParseCompactInput(doc)
	if err != nil {
		t.Fatal(err)
	}
	if want := string(doc[at : at+8]); in.Reference.Tag != want || in.Reference.Registry != "docker.io" || in.Mirrors[0] != "docker.io" {
		t.Errorf("ParseCompactInput = %+v (reference %+v), want tag %q", in, in.Reference, want)
	}
}

// FuzzParseCompactInput checks that no input panics the decoder.
func FuzzParseCompactInput(f *testing.F) {
	f.Add(compactDoc())
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseCompactInput(b)
	})
}

func BenchmarkParseCompactInput(b *testing.B) {
	doc := compactDoc()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseCompactInput(doc); err != nil {
			b.Fatal(err)
		}
	}
}
