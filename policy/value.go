package policy

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputKeys are the object keys of the input, built once per engine.
type inputKeys struct {
	action, reference, registry, repository, tag, digest, kind *ast.Term
	mediaType, size, peer, id, address, tlsSubject             *ast.Term
	node, name, labels, source, image, pinned, mirrors         *ast.Term
	registries, repositories                                   *ast.Term
	upstream, endpoint, credentials                            *ast.Term
}

func newInputKeys() *inputKeys {
	t := ast.StringTerm
	return &inputKeys{
		action: t("action"), reference: t("reference"), registry: t("registry"),
		repository: t("repository"), tag: t("tag"), digest: t("digest"), kind: t("kind"),
		mediaType: t("media_type"), size: t("size"), peer: t("peer"), id: t("id"),
		address: t("address"), tlsSubject: t("tls_subject"), node: t("node"), name: t("name"),
		labels: t("labels"), source: t("source"), image: t("image"), pinned: t("pinned"),
		mirrors: t("mirrors"), registries: t("registries"), repositories: t("repositories"),
		upstream: t("upstream"), endpoint: t("endpoint"), credentials: t("credentials"),
	}
}

// inputValue builds the Rego input straight from the struct, field for
// field as encoding/json would write it (omitempty fields left out), so
// Rego and Wasm see the same document without a JSON round trip.
// mirrors, when not nil, is the prebuilt term of in.Mirrors.
//
// Only the fields of keep are built (an object with none of its fields
// kept is left out): a policy set that reads only some fields
// (regoeng.InputReads) decides the same on the pruned document, built
// with fewer allocations.
func (k *inputKeys) inputValue(in *Input, mirrors *ast.Term, keep fieldMask) ast.Value {
	kv := make([][2]*ast.Term, 0, 8)
	kv = append(kv, [2]*ast.Term{k.action, ast.InternedTerm(string(in.Action))})
	str := func(o [][2]*ast.Term, bit fieldMask, key *ast.Term, v string) [][2]*ast.Term {
		if keep&bit == 0 {
			return o
		}
		return appendStr(o, key, v)
	}
	if r := in.Reference; r != nil && keep&fReference != 0 {
		o := make([][2]*ast.Term, 0, 5)
		o = str(o, fRegistry, k.registry, r.Registry)
		o = str(o, fRepository, k.repository, r.Repository)
		o = str(o, fTag, k.tag, r.Tag)
		o = str(o, fDigest, k.digest, r.Digest)
		o = str(o, fKind, k.kind, r.Kind)
		kv = append(kv, [2]*ast.Term{k.reference, ast.NewTerm(ast.NewObject(o...))})
	}
	kv = str(kv, fMediaType, k.mediaType, in.MediaType)
	if in.Size != 0 && keep&fSize != 0 {
		kv = append(kv, [2]*ast.Term{k.size, ast.InternedTerm(in.Size)})
	}
	if keep == fAll {
		return k.rest(kv, in, mirrors)
	}
	if p := in.Peer; p != nil && keep&fPeer != 0 {
		o := make([][2]*ast.Term, 0, 3)
		o = str(o, fPeerID, k.id, p.ID)
		o = str(o, fPeerAddress, k.address, p.Address)
		o = str(o, fPeerTLSSubject, k.tlsSubject, p.TLSSubject)
		kv = append(kv, [2]*ast.Term{k.peer, ast.NewTerm(ast.NewObject(o...))})
	}
	if n := in.Node; n != nil && keep&fNode != 0 {
		o := make([][2]*ast.Term, 0, 2)
		o = str(o, fNodeName, k.name, n.Name)
		if len(n.Labels) > 0 && keep&fNodeLabels != 0 {
			o = append(o, [2]*ast.Term{k.labels, labelsTerm(n.Labels)})
		}
		kv = append(kv, [2]*ast.Term{k.node, ast.NewTerm(ast.NewObject(o...))})
	}
	if s := in.Source; s != nil && keep&fSource != 0 {
		o := make([][2]*ast.Term, 0, 5)
		o = str(o, fSourceImage, k.image, s.Image)
		if keep&fSourcePinned != 0 {
			o = append(o, [2]*ast.Term{k.pinned, ast.InternedTerm(s.Pinned)})
		}
		if len(s.Labels) > 0 && keep&fSourceLabels != 0 {
			o = append(o, [2]*ast.Term{k.labels, labelsTerm(s.Labels)})
		}
		if len(s.Registries) > 0 && keep&fSourceRegistries != 0 {
			o = append(o, [2]*ast.Term{k.registries, mirrorsTerm(s.Registries)})
		}
		if len(s.Repositories) > 0 && keep&fSourceRepositories != 0 {
			o = append(o, [2]*ast.Term{k.repositories, mirrorsTerm(s.Repositories)})
		}
		kv = append(kv, [2]*ast.Term{k.source, ast.NewTerm(ast.NewObject(o...))})
	}
	if u := in.Upstream; u != nil && keep&fUpstream != 0 {
		o := make([][2]*ast.Term, 0, 2)
		o = str(o, fUpstreamEndpoint, k.endpoint, u.Endpoint)
		if keep&fUpstreamCredentials != 0 {
			o = append(o, [2]*ast.Term{k.credentials, ast.InternedTerm(u.Credentials)})
		}
		kv = append(kv, [2]*ast.Term{k.upstream, ast.NewTerm(ast.NewObject(o...))})
	}
	if keep&fMirrors != 0 {
		if mirrors == nil {
			mirrors = mirrorsTerm(in.Mirrors)
		}
		kv = append(kv, [2]*ast.Term{k.mirrors, mirrors})
	}
	return ast.NewObject(kv...)
}

// rest appends the fields after size, all of them, to kv.
func (k *inputKeys) rest(kv [][2]*ast.Term, in *Input, mirrors *ast.Term) ast.Value {
	if p := in.Peer; p != nil {
		o := make([][2]*ast.Term, 0, 3)
		o = appendStr(o, k.id, p.ID)
		o = appendStr(o, k.address, p.Address)
		o = appendStr(o, k.tlsSubject, p.TLSSubject)
		kv = append(kv, [2]*ast.Term{k.peer, ast.NewTerm(ast.NewObject(o...))})
	}
	if n := in.Node; n != nil {
		o := make([][2]*ast.Term, 0, 2)
		o = appendStr(o, k.name, n.Name)
		if len(n.Labels) > 0 {
			o = append(o, [2]*ast.Term{k.labels, labelsTerm(n.Labels)})
		}
		kv = append(kv, [2]*ast.Term{k.node, ast.NewTerm(ast.NewObject(o...))})
	}
	if s := in.Source; s != nil {
		o := make([][2]*ast.Term, 0, 5)
		o = appendStr(o, k.image, s.Image)
		o = append(o, [2]*ast.Term{k.pinned, ast.InternedTerm(s.Pinned)})
		if len(s.Labels) > 0 {
			o = append(o, [2]*ast.Term{k.labels, labelsTerm(s.Labels)})
		}
		if len(s.Registries) > 0 {
			o = append(o, [2]*ast.Term{k.registries, mirrorsTerm(s.Registries)})
		}
		if len(s.Repositories) > 0 {
			o = append(o, [2]*ast.Term{k.repositories, mirrorsTerm(s.Repositories)})
		}
		kv = append(kv, [2]*ast.Term{k.source, ast.NewTerm(ast.NewObject(o...))})
	}
	if u := in.Upstream; u != nil {
		o := make([][2]*ast.Term, 0, 2)
		o = appendStr(o, k.endpoint, u.Endpoint)
		o = append(o, [2]*ast.Term{k.credentials, ast.InternedTerm(u.Credentials)})
		kv = append(kv, [2]*ast.Term{k.upstream, ast.NewTerm(ast.NewObject(o...))})
	}
	if mirrors == nil {
		mirrors = mirrorsTerm(in.Mirrors)
	}
	kv = append(kv, [2]*ast.Term{k.mirrors, mirrors})
	return ast.NewObject(kv...)
}

func mirrorsTerm(m []string) *ast.Term {
	if m == nil {
		return ast.NullTerm()
	}
	ts := make([]*ast.Term, len(m))
	for i, s := range m {
		ts[i] = ast.InternedTerm(s)
	}
	return ast.ArrayTerm(ts...)
}

func appendStr(kv [][2]*ast.Term, k *ast.Term, v string) [][2]*ast.Term {
	if v == "" {
		return kv
	}
	return append(kv, [2]*ast.Term{k, ast.InternedTerm(v)})
}

func labelsTerm(m map[string]string) *ast.Term {
	kv := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		kv = append(kv, [2]*ast.Term{ast.InternedTerm(k), ast.InternedTerm(v)})
	}
	return ast.NewTerm(ast.NewObject(kv...))
}

// appendKey appends the canonical JSON of in (the bytes encoding/json
// writes for it, HTML escaping aside) to dst: the decision cache key.
func appendKey(dst []byte, in *Input) []byte {
	dst = append(dst, `{"action":`...)
	dst = appendJSONString(dst, string(in.Action))
	if r := in.Reference; r != nil {
		dst = append(dst, `,"reference":{`...)
		n := len(dst)
		dst = appendField(dst, n, "registry", r.Registry)
		dst = appendField(dst, n, "repository", r.Repository)
		dst = appendField(dst, n, "tag", r.Tag)
		dst = appendField(dst, n, "digest", r.Digest)
		dst = appendField(dst, n, "kind", r.Kind)
		dst = append(dst, '}')
	}
	if in.MediaType != "" {
		dst = append(dst, `,"media_type":`...)
		dst = appendJSONString(dst, in.MediaType)
	}
	if in.Size != 0 {
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, in.Size, 10)
	}
	if p := in.Peer; p != nil {
		dst = append(dst, `,"peer":{`...)
		n := len(dst)
		dst = appendField(dst, n, "id", p.ID)
		dst = appendField(dst, n, "address", p.Address)
		dst = appendField(dst, n, "tls_subject", p.TLSSubject)
		dst = append(dst, '}')
	}
	if nd := in.Node; nd != nil {
		dst = append(dst, `,"node":{`...)
		n := len(dst)
		dst = appendField(dst, n, "name", nd.Name)
		dst = appendLabels(dst, n, nd.Labels)
		dst = append(dst, '}')
	}
	if s := in.Source; s != nil {
		dst = append(dst, `,"source":{`...)
		n := len(dst)
		dst = appendField(dst, n, "image", s.Image)
		if len(dst) > n {
			dst = append(dst, ',')
		}
		dst = append(dst, `"pinned":`...)
		dst = strconv.AppendBool(dst, s.Pinned)
		dst = appendLabels(dst, n, s.Labels)
		dst = appendList(dst, "registries", s.Registries)
		dst = appendList(dst, "repositories", s.Repositories)
		dst = append(dst, '}')
	}
	if u := in.Upstream; u != nil {
		dst = appendUpstream(dst, u, fUpstream)
	}
	dst = appendMirrors(append(dst, `,"mirrors":`...), in.Mirrors)
	return append(dst, '}')
}

// appendField appends "k":"v" unless v is empty, with a comma when the
// object opened at start already has a member.
func appendField(dst []byte, start int, k, v string) []byte {
	if v == "" {
		return dst
	}
	if len(dst) > start {
		dst = append(dst, ',')
	}
	dst = appendJSONString(dst, k)
	dst = append(dst, ':')
	return appendJSONString(dst, v)
}

func appendLabels(dst []byte, start int, m map[string]string) []byte {
	if len(m) == 0 {
		return dst
	}
	if len(dst) > start {
		dst = append(dst, ',')
	}
	dst = append(dst, `"labels":{`...)
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as JSON does (invalid UTF-8 becomes U+FFFD).
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// appendList appends ,"k":[…] unless l is empty; it follows "pinned", so
// a comma is always due.
func appendList(dst []byte, k string, l []string) []byte {
	if len(l) == 0 {
		return dst
	}
	dst = append(dst, ',')
	dst = appendJSONString(dst, k)
	dst = append(dst, ':')
	return appendMirrors(dst, l)
}

// appendUpstream appends `,"upstream":{…}` with the fields of keyed.
func appendUpstream(dst []byte, u *Upstream, keyed fieldMask) []byte {
	dst = append(dst, `,"upstream":{`...)
	n := len(dst)
	if keyed&fUpstreamEndpoint != 0 {
		dst = appendField(dst, n, "endpoint", u.Endpoint)
	}
	if keyed&fUpstreamCredentials != 0 {
		if len(dst) > n {
			dst = append(dst, ',')
		}
		dst = append(dst, `"credentials":`...)
		dst = strconv.AppendBool(dst, u.Credentials)
	}
	return append(dst, '}')
}
