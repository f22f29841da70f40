package policy

import (
	"strconv"
	"strings"

	"github.com/sluice-oci/sluice/policy/internal/regoeng"
)

// A projection narrows the decision cache key to the input fields the
// policy set reads, so that inputs differing only in fields no rule looks
// at (a peer's address, a blob's size, a repository the policy ignores)
// share a decision. It exists only when every source is Rego (a Wasm
// module may read anything) and the analysis of the compiled set found
// only fixed paths (regoeng.InputReads). The action is always in the key:
// it picks the package evaluated. Data is not: it is fixed per revision,
// and so is the cache.
type projection struct {
	value    fieldMask // fields whose value is in the key
	presence fieldMask // string fields of which only "non-empty" is in the key
}

// fieldMask is a set of input fields (the leaves of Input's JSON).
type fieldMask uint32

const (
	fAction fieldMask = 1 << iota
	fRegistry
	fRepository
	fTag
	fDigest
	fKind
	fMediaType
	fSize
	fPeerID
	fPeerAddress
	fPeerTLSSubject
	fNodeName
	fNodeLabels
	fSourceImage
	fSourcePinned
	fSourceLabels
	fMirrors
	fSourceRegistries
	fSourceRepositories
	fUpstreamEndpoint
	fUpstreamCredentials

	fAll       = fUpstreamCredentials<<1 - 1
	fReference = fRegistry | fRepository | fTag | fDigest | fKind
	fPeer      = fPeerID | fPeerAddress | fPeerTLSSubject
	fNode      = fNodeName | fNodeLabels
	fSource    = fSourceImage | fSourcePinned | fSourceLabels | fSourceRegistries | fSourceRepositories
	fUpstream  = fUpstreamEndpoint | fUpstreamCredentials
)

// inputFields are the leaves of the input document as inputValue builds
// it. str marks the string fields left out when empty (omitempty), the
// only ones whose presence alone may be keyed. A test checks this table
// against the Input struct.
var inputFields = []struct {
	path string
	bit  fieldMask
	str  bool
}{
	{"action", fAction, false}, // never empty, but always keyed by value
	{"reference.registry", fRegistry, true},
	{"reference.repository", fRepository, true},
	{"reference.tag", fTag, true},
	{"reference.digest", fDigest, true},
	{"reference.kind", fKind, true},
	{"media_type", fMediaType, true},
	{"size", fSize, false},
	{"peer.id", fPeerID, true},
	{"peer.address", fPeerAddress, true},
	{"peer.tls_subject", fPeerTLSSubject, true},
	{"node.name", fNodeName, true},
	{"node.labels", fNodeLabels, false},
	{"source.image", fSourceImage, true},
	{"source.pinned", fSourcePinned, false},
	{"source.labels", fSourceLabels, false},
	{"source.registries", fSourceRegistries, false},
	{"source.repositories", fSourceRepositories, false},
	{"upstream.endpoint", fUpstreamEndpoint, true},
	{"upstream.credentials", fUpstreamCredentials, false},
	{"mirrors", fMirrors, false},
}

// fieldsOf maps an input path to the fields whose values determine the
// value at that path: the fields under it (a parent object), or the field
// above it (a path into a string, a label map or the mirrors list). ok is
// false for a path the input never has, so that a field added to Input
// but not to inputFields turns projection off rather than out of the key.
func fieldsOf(path []string) (m fieldMask, str bool, ok bool) {
	p := strings.Join(path, ".")
	for _, f := range inputFields {
		switch {
		case f.path == p:
			return f.bit, f.str, true
		case strings.HasPrefix(f.path, p+"."), strings.HasPrefix(p, f.path+"."):
			m |= f.bit
		}
	}
	return m, false, m != 0
}

// newProjection builds the projection of what the Rego set reads; nil
// means the whole input is the key.
func newProjection(reads []regoeng.InputRead, ok bool) *projection {
	if !ok {
		return nil
	}
	pr := &projection{value: fAction}
	var presence fieldMask
	for _, r := range reads {
		m, str, ok := fieldsOf(r.Path)
		if !ok {
			return nil
		}
		if r.PresenceOnly && str {
			presence |= m
			continue
		}
		pr.value |= m
	}
	pr.presence = presence &^ pr.value
	if pr.value == fAll {
		return nil // the same key as without projection, built faster
	}
	return pr
}

// String lists the keyed fields, "?" marking presence-only ones.
func (pr *projection) String() string {
	if pr == nil {
		return "*"
	}
	var parts []string
	for _, f := range inputFields {
		switch {
		case pr.value&f.bit != 0:
			parts = append(parts, f.path)
		case pr.presence&f.bit != 0:
			parts = append(parts, f.path+"?")
		}
	}
	return strings.Join(parts, " ")
}

// appendKey appends the decision cache key of in: its canonical JSON
// (appendKey) with the fields not in the projection left out, and a
// presence-only field written as true when it is non-empty. Its format is
// fixed per revision, as is the cache.
func (pr *projection) appendKey(dst []byte, in *Input) []byte {
	if pr == nil {
		return appendKey(dst, in)
	}
	return appendKeyFields(dst, in, pr.value, pr.presence)
}

// appendKeyFields is appendKey restricted to the fields of value, plus
// presence bits for the fields of presence. An object (reference, peer,
// node, source) is written, perhaps empty, when it is present and any of
// its fields is keyed.
func appendKeyFields(dst []byte, in *Input, value, presence fieldMask) []byte {
	keyed := value | presence
	field := func(dst []byte, start int, bit fieldMask, k, v string) []byte {
		switch {
		case value&bit != 0:
			return appendField(dst, start, k, v)
		case presence&bit != 0 && v != "":
			if len(dst) > start {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, k)
			return append(dst, ":true"...)
		}
		return dst
	}
	dst = append(dst, `{"action":`...)
	dst = appendJSONString(dst, string(in.Action))
	if r := in.Reference; r != nil && keyed&fReference != 0 {
		dst = append(dst, `,"reference":{`...)
		n := len(dst)
		dst = field(dst, n, fRegistry, "registry", r.Registry)
		dst = field(dst, n, fRepository, "repository", r.Repository)
		dst = field(dst, n, fTag, "tag", r.Tag)
		dst = field(dst, n, fDigest, "digest", r.Digest)
		dst = field(dst, n, fKind, "kind", r.Kind)
		dst = append(dst, '}')
	}
	dst = field(dst, 0, fMediaType, "media_type", in.MediaType) // start 0: a member precedes
	if in.Size != 0 && value&fSize != 0 {
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, in.Size, 10)
	}
	if p := in.Peer; p != nil && keyed&fPeer != 0 {
		dst = append(dst, `,"peer":{`...)
		n := len(dst)
		dst = field(dst, n, fPeerID, "id", p.ID)
		dst = field(dst, n, fPeerAddress, "address", p.Address)
		dst = field(dst, n, fPeerTLSSubject, "tls_subject", p.TLSSubject)
		dst = append(dst, '}')
	}
	if nd := in.Node; nd != nil && keyed&fNode != 0 {
		dst = append(dst, `,"node":{`...)
		n := len(dst)
		dst = field(dst, n, fNodeName, "name", nd.Name)
		if value&fNodeLabels != 0 {
			dst = appendLabels(dst, n, nd.Labels)
		}
		dst = append(dst, '}')
	}
	if s := in.Source; s != nil && keyed&fSource != 0 {
		dst = append(dst, `,"source":{`...)
		n := len(dst)
		dst = field(dst, n, fSourceImage, "image", s.Image)
		if value&fSourcePinned != 0 {
			if len(dst) > n {
				dst = append(dst, ',')
			}
			dst = append(dst, `"pinned":`...)
			dst = strconv.AppendBool(dst, s.Pinned)
		}
		if value&fSourceLabels != 0 {
			dst = appendLabels(dst, n, s.Labels)
		}
		for _, l := range []struct {
			bit  fieldMask
			k    string
			list []string
		}{{fSourceRegistries, "registries", s.Registries}, {fSourceRepositories, "repositories", s.Repositories}} {
			if value&l.bit != 0 && len(l.list) > 0 {
				if len(dst) > n {
					dst = append(dst, ',')
				}
				dst = appendJSONString(dst, l.k)
				dst = appendMirrors(append(dst, ':'), l.list)
			}
		}
		dst = append(dst, '}')
	}
	if u := in.Upstream; u != nil && keyed&fUpstream != 0 {
		// presence-only endpoint: keyed by value too (rare, tiny).
		dst = appendUpstream(dst, u, keyed&fUpstream)
	}
	if value&fMirrors != 0 {
		dst = appendMirrors(append(dst, `,"mirrors":`...), in.Mirrors)
	}
	return append(dst, '}')
}

func appendMirrors(dst []byte, m []string) []byte {
	if m == nil {
		return append(dst, "null"...)
	}
	dst = append(dst, '[')
	for i, s := range m {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, s)
	}
	return append(dst, ']')
}
