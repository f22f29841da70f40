package policy

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/open-policy-agent/opa/v1/ast"
)

// inputValue builds the Rego input straight from the struct, field for
// field as encoding/json would write it (omitempty fields left out), so
// Rego and Wasm see the same document without a JSON round trip.
func inputValue(in *Input) ast.Value {
	kv := make([][2]*ast.Term, 0, 8)
	kv = append(kv, pair("action", ast.StringTerm(string(in.Action))))
	if r := in.Reference; r != nil {
		o := make([][2]*ast.Term, 0, 5)
		o = appendStr(o, "registry", r.Registry)
		o = appendStr(o, "repository", r.Repository)
		o = appendStr(o, "tag", r.Tag)
		o = appendStr(o, "digest", r.Digest)
		o = appendStr(o, "kind", r.Kind)
		kv = append(kv, pair("reference", ast.NewTerm(ast.NewObject(o...))))
	}
	kv = appendStr(kv, "media_type", in.MediaType)
	if in.Size != 0 {
		kv = append(kv, pair("size", ast.IntNumberTerm(int(in.Size))))
	}
	if p := in.Peer; p != nil {
		o := make([][2]*ast.Term, 0, 3)
		o = appendStr(o, "id", p.ID)
		o = appendStr(o, "address", p.Address)
		o = appendStr(o, "tls_subject", p.TLSSubject)
		kv = append(kv, pair("peer", ast.NewTerm(ast.NewObject(o...))))
	}
	if n := in.Node; n != nil {
		o := make([][2]*ast.Term, 0, 2)
		o = appendStr(o, "name", n.Name)
		if len(n.Labels) > 0 {
			o = append(o, pair("labels", labelsTerm(n.Labels)))
		}
		kv = append(kv, pair("node", ast.NewTerm(ast.NewObject(o...))))
	}
	if s := in.Source; s != nil {
		o := make([][2]*ast.Term, 0, 3)
		o = appendStr(o, "image", s.Image)
		o = append(o, pair("pinned", ast.BooleanTerm(s.Pinned)))
		if len(s.Labels) > 0 {
			o = append(o, pair("labels", labelsTerm(s.Labels)))
		}
		kv = append(kv, pair("source", ast.NewTerm(ast.NewObject(o...))))
	}
	if in.Mirrors == nil {
		kv = append(kv, pair("mirrors", ast.NullTerm()))
	} else {
		ts := make([]*ast.Term, len(in.Mirrors))
		for i, m := range in.Mirrors {
			ts[i] = ast.StringTerm(m)
		}
		kv = append(kv, pair("mirrors", ast.ArrayTerm(ts...)))
	}
	return ast.NewObject(kv...)
}

func pair(k string, v *ast.Term) [2]*ast.Term { return [2]*ast.Term{ast.StringTerm(k), v} }

func appendStr(kv [][2]*ast.Term, k, v string) [][2]*ast.Term {
	if v == "" {
		return kv
	}
	return append(kv, pair(k, ast.StringTerm(v)))
}

func labelsTerm(m map[string]string) *ast.Term {
	kv := make([][2]*ast.Term, 0, len(m))
	for k, v := range m {
		kv = append(kv, pair(k, ast.StringTerm(v)))
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
		dst = append(dst, '}')
	}
	dst = append(dst, `,"mirrors":`...)
	if in.Mirrors == nil {
		dst = append(dst, "null"...)
	} else {
		dst = append(dst, '[')
		for i, m := range in.Mirrors {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, m)
		}
		dst = append(dst, ']')
	}
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
