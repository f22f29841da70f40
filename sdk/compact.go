package sdk

import (
	"encoding/binary"
	"errors"
)

// The compact input layout of ABI v1's optional fast path
// (sluice_decide_compact, wasm/ABI.md "Compact input"). It mirrors
// wasm/internal/abi/compact.go, which the host encodes with; a test in
// wasm/ checks that both agree.
const (
	compactVersion     = 1
	compactHeaderLen   = 124
	compactReference   = 1 << 0
	compactPeer        = 1 << 1
	compactNode        = 1 << 2
	compactSource      = 1 << 3
	compactPinned      = 1 << 4
	compactMirrors     = 1 << 5
	compactLists       = 1 << 6 // source.registries and .repositories follow the labels
	compactUpstream    = 1 << 7 // upstream present; its endpoint string follows the lists
	compactCredentials = 1 << 8
	compactStringsOff  = 28
	compactStrings     = 12
)

var errCompact = errors.New("sdk: compact input: malformed")

// ParseCompactInput decodes the compact input layout: the action and the
// input document, as ParseInput does for JSON (Data and Settings are left
// empty). It is written for Go inside Wasm, where every function call and
// loop iteration costs: the fixed fields are read without loops, and the
// document costs two allocations (one copy of the bytes that every string
// slices into, one block for the nested objects) plus label maps.
func ParseCompactInput(b []byte) (Input, error) {
	if len(b) < compactHeaderLen || binary.LittleEndian.Uint32(b) != compactVersion {
		return Input{}, errCompact
	}
	flags := binary.LittleEndian.Uint32(b[4:])
	nMirrors := uint64(binary.LittleEndian.Uint32(b[16:]))
	nNode := uint64(binary.LittleEndian.Uint32(b[20:]))
	nSource := uint64(binary.LittleEndian.Uint32(b[24:]))
	if compactHeaderLen+8*(nMirrors+2*nNode+2*nSource) > uint64(len(b)) {
		return Input{}, errCompact
	}
	c := compactReader{b: b, s: string(b)}
	in := Input{
		Action:    c.str(0),
		MediaType: c.str(6),
		Size:      int64(binary.LittleEndian.Uint64(b[8:])),
	}
	st := new(storage)
	if flags&compactReference != 0 {
		st.ref = Reference{Registry: c.str(1), Repository: c.str(2), Tag: c.str(3), Digest: c.str(4), Kind: c.str(5)}
		in.Reference = &st.ref
	}
	if flags&compactPeer != 0 {
		st.peer = Peer{ID: c.str(7), Address: c.str(8), TLSSubject: c.str(9)}
		in.Peer = &st.peer
	}
	slot := compactStrings
	if flags&compactMirrors != 0 {
		in.Mirrors = st.mirrors[:0]
		if nMirrors > uint64(len(st.mirrors)) {
			in.Mirrors = make([]string, 0, nMirrors)
		}
		for range nMirrors {
			in.Mirrors = append(in.Mirrors, c.str(slot))
			slot++
		}
	} else {
		slot += int(nMirrors)
	}
	var nodeLabels, sourceLabels map[string]string
	nodeLabels, slot = c.labels(slot, nNode)
	sourceLabels, slot = c.labels(slot, nSource)
	if flags&compactNode != 0 {
		st.node = Node{Name: c.str(10), Labels: nodeLabels}
		in.Node = &st.node
	}
	if flags&compactSource != 0 {
		st.source = Source{Image: c.str(11), Pinned: flags&compactPinned != 0, Labels: sourceLabels}
		in.Source = &st.source
	}
	if flags&compactSource != 0 && flags&compactLists != 0 {
		st.source.Registries, st.source.Repositories, slot = c.lists(slot)
	}
	if flags&compactUpstream != 0 {
		st.upstream = Upstream{Endpoint: c.str(slot), Credentials: flags&compactCredentials != 0}
		in.Upstream = &st.upstream
	}
	if c.bad {
		return Input{}, errCompact
	}
	return in, nil
}

// compactReader reads the strings of a compact input; s is the copy of b
// that they slice. A string outside the buffer sets bad.
type compactReader struct {
	b   []byte
	s   string
	bad bool
}

func (c *compactReader) str(slot int) string {
	at := compactStringsOff + 8*slot
	if uint64(at)+8 > uint64(len(c.b)) {
		c.bad = true
		return ""
	}
	off := uint64(binary.LittleEndian.Uint32(c.b[at:]))
	n := uint64(binary.LittleEndian.Uint32(c.b[at+4:]))
	if off+n > uint64(len(c.s)) {
		c.bad = true
		return ""
	}
	return c.s[off : off+n]
}

// lists reads the entry (u32 R, u32 P) at slot and the R + P strings
// after it: source.registries, then source.repositories.
func (c *compactReader) lists(slot int) (registries, repositories []string, next int) {
	at := compactStringsOff + 8*slot
	if uint64(at)+8 > uint64(len(c.b)) {
		c.bad = true
		return nil, nil, slot
	}
	r := uint64(binary.LittleEndian.Uint32(c.b[at:]))
	p := uint64(binary.LittleEndian.Uint32(c.b[at+4:]))
	if uint64(at)+8+8*(r+p) > uint64(len(c.b)) {
		c.bad = true
		return nil, nil, slot
	}
	slot++
	read := func(n uint64) []string {
		if n == 0 {
			return nil
		}
		out := make([]string, 0, n)
		for range n {
			out = append(out, c.str(slot))
			slot++
		}
		return out
	}
	registries = read(r)
	repositories = read(p)
	return registries, repositories, slot
}

func (c *compactReader) labels(slot int, n uint64) (map[string]string, int) {
	if n == 0 {
		return nil, slot
	}
	m := make(map[string]string, n)
	for range n {
		m[c.str(slot)] = c.str(slot + 1)
		slot += 2
	}
	return m, slot
}
