package abi

import (
	"encoding/binary"
	"slices"
	"unicode/utf8"

	"github.com/sluice-oci/sluice/policy"
)

// ExportDecideCompact is the optional fast-path export (ABI.md "Compact
// input"): sluice_decide_compact(ptr, len i32) -> i64 takes the action and
// the input in the compact layout below and returns a JSON decision like
// sluice_decide.
const ExportDecideCompact = "sluice_decide_compact"

// The compact layout, all integers little-endian. A string is a (u32
// offset from the start of the buffer, u32 length) pair; its bytes are
// valid UTF-8 (the host replaces each invalid byte by U+FFFD, as the JSON
// encoding does).
//
//	0    u32 CompactVersion
//	4    u32 flags (Compact*)
//	8    i64 size
//	16   u32 number of mirrors
//	20   u32 number of node labels
//	24   u32 number of source labels
//	28   12 strings, in the order of the Compact*Str constants
//	124  mirrors: one string each
//	     node labels: key string, value string each (sorted by key)
//	     source labels: likewise
//	     with CompactLists: one entry (u32 R, u32 P), then R strings
//	     (source.registries) and P strings (source.repositories)
//	     with CompactUpstream: one string (upstream.endpoint)
//	     then the string bytes
const (
	CompactVersion     = 1
	CompactHeaderLen   = 124
	CompactReference   = 1 << 0 // reference present
	CompactPeer        = 1 << 1
	CompactNode        = 1 << 2
	CompactSource      = 1 << 3
	CompactPinned      = 1 << 4 // source.pinned
	CompactMirrors     = 1 << 5 // mirrors not null (possibly empty)
	CompactLists       = 1 << 6 // source.registries/.repositories entries follow the source labels
	CompactUpstream    = 1 << 7 // upstream present; its endpoint string follows the lists
	CompactCredentials = 1 << 8 // upstream.credentials
	compactStringsOff  = 28
)

// Indices of the fixed strings.
const (
	CompactActionStr = iota
	CompactRegistryStr
	CompactRepositoryStr
	CompactTagStr
	CompactDigestStr
	CompactKindStr
	CompactMediaTypeStr
	CompactPeerIDStr
	CompactPeerAddressStr
	CompactPeerTLSSubjectStr
	CompactNodeNameStr
	CompactSourceImageStr
	compactStrings
)

// AppendCompact appends the compact encoding of action and in to dst.
// Decoding it yields what decoding AppendInput's JSON yields.
func AppendCompact(dst []byte, action policy.Action, in *policy.Input) []byte {
	base := len(dst)
	var keyStack [2][8]string
	nodeKeys := sortedKeys(keyStack[0][:0], in.Node, nil)
	sourceKeys := sortedKeys(keyStack[1][:0], nil, in.Source)
	nStrings := compactStrings + len(in.Mirrors) + 2*len(nodeKeys) + 2*len(sourceKeys)
	var lists bool
	if s := in.Source; s != nil && len(s.Registries)+len(s.Repositories) > 0 {
		lists = true
		nStrings += 1 + len(s.Registries) + len(s.Repositories)
	}
	if in.Upstream != nil {
		nStrings++
	}
	dst = slices.Grow(dst, compactStringsOff+8*nStrings+64)
	var flags uint32
	if in.Reference != nil {
		flags |= CompactReference
	}
	if in.Peer != nil {
		flags |= CompactPeer
	}
	if in.Node != nil {
		flags |= CompactNode
	}
	if in.Source != nil {
		flags |= CompactSource
		if in.Source.Pinned {
			flags |= CompactPinned
		}
		if lists {
			flags |= CompactLists
		}
	}
	if in.Mirrors != nil {
		flags |= CompactMirrors
	}
	if in.Upstream != nil {
		flags |= CompactUpstream
		if in.Upstream.Credentials {
			flags |= CompactCredentials
		}
	}
	dst = binary.LittleEndian.AppendUint32(dst, CompactVersion)
	dst = binary.LittleEndian.AppendUint32(dst, flags)
	dst = binary.LittleEndian.AppendUint64(dst, uint64(in.Size))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(in.Mirrors)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(nodeKeys)))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(sourceKeys)))
	// The string table, zeroed; filled in as the bytes are appended.
	w := compactWriter{dst: append(dst, make([]byte, 8*nStrings)...), base: base, at: len(dst)}
	var r policy.Reference
	if in.Reference != nil {
		r = *in.Reference
	}
	var p policy.Peer
	if in.Peer != nil {
		p = *in.Peer
	}
	var nodeName, image string
	if in.Node != nil {
		nodeName = in.Node.Name
	}
	if in.Source != nil {
		image = in.Source.Image
	}
	w.put(string(action))
	w.put(r.Registry)
	w.put(r.Repository)
	w.put(r.Tag)
	w.put(r.Digest)
	w.put(r.Kind)
	w.put(in.MediaType)
	w.put(p.ID)
	w.put(p.Address)
	w.put(p.TLSSubject)
	w.put(nodeName)
	w.put(image)
	for _, m := range in.Mirrors {
		w.put(m)
	}
	for _, k := range nodeKeys {
		w.put(k)
		w.put(in.Node.Labels[k])
	}
	for _, k := range sourceKeys {
		w.put(k)
		w.put(in.Source.Labels[k])
	}
	if lists {
		binary.LittleEndian.PutUint32(w.dst[w.at:], uint32(len(in.Source.Registries)))
		binary.LittleEndian.PutUint32(w.dst[w.at+4:], uint32(len(in.Source.Repositories)))
		w.at += 8
		for _, r := range in.Source.Registries {
			w.put(r)
		}
		for _, r := range in.Source.Repositories {
			w.put(r)
		}
	}
	if in.Upstream != nil {
		w.put(in.Upstream.Endpoint)
	}
	return w.dst
}

// compactWriter appends strings after the string table of a compact
// input and fills in their table entries, in order from at.
type compactWriter struct {
	dst      []byte
	base, at int
}

func (w *compactWriter) put(s string) {
	at := w.at
	w.at += 8
	if s == "" {
		return
	}
	off := len(w.dst) - w.base
	w.dst = appendValidUTF8(w.dst, s)
	binary.LittleEndian.PutUint32(w.dst[at:], uint32(off))
	binary.LittleEndian.PutUint32(w.dst[at+4:], uint32(len(w.dst)-w.base-off))
}

func sortedKeys(dst []string, n *policy.Node, s *policy.Source) []string {
	var m map[string]string
	switch {
	case n != nil:
		m = n.Labels
	case s != nil:
		m = s.Labels
	}
	for k := range m {
		dst = append(dst, k)
	}
	slices.Sort(dst)
	return dst
}

// appendValidUTF8 appends s with every byte that is not part of valid
// UTF-8 replaced by U+FFFD, as encoding/json does.
func appendValidUTF8(dst []byte, s string) []byte {
	if utf8.ValidString(s) {
		return append(dst, s...)
	}
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = utf8.AppendRune(dst, utf8.RuneError)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return dst
}
