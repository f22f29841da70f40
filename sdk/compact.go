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
// empty).
func ParseCompactInput(b []byte) (Input, error) {
	var in Input
	if err := parseCompact(b, &in); err != nil {
		return Input{}, err
	}
	return in, nil
}

// parseCompact decodes b into in, setting every field but Data and
// Settings. It is written for Go inside Wasm, where every function call,
// loop iteration and copy or zeroing of more than a few words (a bulk
// memory instruction, which the runtime turns into calls) costs: the input
// is decoded in place, the fixed fields are read by inlined loads without
// loops, and the document costs two allocations (one copy of the bytes
// that every string slices into, one block for the nested objects) plus
// label maps and source lists when present.
func parseCompact(b []byte, in *Input) error {
	if len(b) < compactHeaderLen || binary.LittleEndian.Uint32(b) != compactVersion {
		return errCompact
	}
	flags := binary.LittleEndian.Uint32(b[4:])
	nMirrors := uint64(binary.LittleEndian.Uint32(b[16:]))
	nNode := uint64(binary.LittleEndian.Uint32(b[20:]))
	nSource := uint64(binary.LittleEndian.Uint32(b[24:]))
	if compactHeaderLen+8*(nMirrors+2*nNode+2*nSource) > uint64(len(b)) {
		return errCompact
	}
	// The string bytes follow the entry table: only they are copied.
	// An entry that points before them (the layout allows it) gets its
	// bytes from a copy of the whole buffer, made then.
	lo := compactHeaderLen + 8*(nMirrors+2*nNode+2*nSource)
	c := compactReader{b: b, s: string(b[lo:]), lo: lo}
	in.Action = c.fixed(0)
	in.MediaType = c.fixed(6)
	in.Size = int64(binary.LittleEndian.Uint64(b[8:]))
	in.Reference, in.Peer, in.Node, in.Source, in.Upstream, in.Mirrors = nil, nil, nil, nil, nil, nil
	// The nested objects are new for every input: a policy may keep them.
	// Fields are set one by one: they are zeroed already, and assigning a
	// composite literal would zero each object again. The common ones
	// share one allocation; the others are made when present.
	st := new(compactStorage)
	if flags&compactReference != 0 {
		r := &st.ref
		r.Registry, r.Repository, r.Tag = c.fixed(1), c.fixed(2), c.fixed(3)
		r.Digest, r.Kind = c.fixed(4), c.fixed(5)
		in.Reference = r
	}
	if flags&compactPeer != 0 {
		p := new(Peer)
		p.ID, p.Address, p.TLSSubject = c.fixed(7), c.fixed(8), c.fixed(9)
		in.Peer = p
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
		st.node.Name, st.node.Labels = c.fixed(10), nodeLabels
		in.Node = &st.node
	}
	if flags&compactSource != 0 {
		src := new(Source)
		src.Image, src.Pinned, src.Labels = c.fixed(11), flags&compactPinned != 0, sourceLabels
		if flags&compactLists != 0 {
			src.Registries, src.Repositories, slot = c.lists(slot)
		}
		in.Source = src
	}
	if flags&compactUpstream != 0 {
		up := new(Upstream)
		up.Endpoint, up.Credentials = c.str(slot), flags&compactCredentials != 0
		in.Upstream = up
	}
	if c.bad {
		return errCompact
	}
	return nil
}

// compactStorage holds the nested objects of a compact input that most
// decisions have, in one allocation.
type compactStorage struct {
	ref     Reference
	node    Node
	mirrors [4]string
}

// compactReader reads the strings of a compact input: s is the copy of
// b[lo:] that they slice, all a copy of b made for a string before lo. A
// string outside the buffer sets bad.
type compactReader struct {
	b   []byte
	s   string
	lo  uint64
	all string
	bad bool
}

// at returns the bytes [off, end) of b, end <= len(b), as a string.
func (c *compactReader) at(off, end uint64) string {
	switch {
	case off >= c.lo:
		return c.s[off-c.lo : end-c.lo]
	case off >= end:
		return ""
	case c.all == "":
		c.all = string(c.b)
	}
	return c.all[off:end]
}

// fixed reads fixed string i (< compactStrings), whose entry the header
// check has found inside b.
func (c *compactReader) fixed(i int) string {
	e := binary.LittleEndian.Uint64(c.b[compactStringsOff+8*i:])
	off, end := e&0xffff_ffff, e&0xffff_ffff+e>>32
	if end <= uint64(len(c.b)) {
		return c.at(off, end)
	}
	c.bad = true
	return ""
}

// str reads the string entry at slot, anywhere in the table.
func (c *compactReader) str(slot int) string {
	at := compactStringsOff + 8*uint64(slot)
	if at+8 <= uint64(len(c.b)) {
		e := binary.LittleEndian.Uint64(c.b[at:])
		off, end := e&0xffff_ffff, e&0xffff_ffff+e>>32
		if end <= uint64(len(c.b)) {
			return c.at(off, end)
		}
	}
	c.bad = true
	return ""
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
