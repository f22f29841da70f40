package abi

import (
	"slices"
	"strconv"
	"unicode/utf8"

	"github.com/sluice-oci/sluice/policy"
)

// AppendInput appends the JSON encoding of in to dst. The bytes are exactly
// those encoding/json produces for policy.Input (same field order, same
// omitempty rules, same escaping, map keys sorted), without reflection and
// with no allocation beyond dst's growth.
func AppendInput(dst []byte, in *policy.Input) []byte {
	dst = append(dst, `{"action":`...)
	dst = appendString(dst, string(in.Action))
	if r := in.Reference; r != nil {
		dst = append(dst, `,"reference":{`...)
		first := true
		dst, first = appendField(dst, first, "registry", r.Registry)
		dst, first = appendField(dst, first, "repository", r.Repository)
		dst, first = appendField(dst, first, "tag", r.Tag)
		dst, first = appendField(dst, first, "digest", r.Digest)
		dst, _ = appendField(dst, first, "kind", r.Kind)
		dst = append(dst, '}')
	}
	if in.MediaType != "" {
		dst = append(dst, `,"media_type":`...)
		dst = appendString(dst, in.MediaType)
	}
	if in.Size != 0 {
		dst = append(dst, `,"size":`...)
		dst = strconv.AppendInt(dst, in.Size, 10)
	}
	if p := in.Peer; p != nil {
		dst = append(dst, `,"peer":{`...)
		first := true
		dst, first = appendField(dst, first, "id", p.ID)
		dst, first = appendField(dst, first, "address", p.Address)
		dst, _ = appendField(dst, first, "tls_subject", p.TLSSubject)
		dst = append(dst, '}')
	}
	if n := in.Node; n != nil {
		dst = append(dst, `,"node":{`...)
		first := true
		dst, first = appendField(dst, first, "name", n.Name)
		dst, _ = appendLabels(dst, first, n.Labels)
		dst = append(dst, '}')
	}
	if s := in.Source; s != nil {
		dst = append(dst, `,"source":{`...)
		first := true
		dst, _ = appendField(dst, first, "image", s.Image)
		if s.Image != "" {
			dst = append(dst, ',')
		}
		dst = append(dst, `"pinned":`...)
		dst = strconv.AppendBool(dst, s.Pinned)
		dst, _ = appendLabels(dst, false, s.Labels)
		dst = appendStrings(dst, "registries", s.Registries)
		dst = appendStrings(dst, "repositories", s.Repositories)
		dst = append(dst, '}')
	}
	if u := in.Upstream; u != nil {
		dst = append(dst, `,"upstream":{`...)
		first := true
		dst, first = appendField(dst, first, "endpoint", u.Endpoint)
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, `"credentials":`...)
		dst = strconv.AppendBool(dst, u.Credentials)
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
			dst = appendString(dst, m)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendField appends "name":"value" unless value is empty (omitempty).
func appendField(dst []byte, first bool, name, value string) ([]byte, bool) {
	if value == "" {
		return dst, first
	}
	if !first {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, name...)
	dst = append(dst, `":`...)
	return appendString(dst, value), false
}

// appendLabels appends "labels":{…} with sorted keys unless m is empty.
func appendLabels(dst []byte, first bool, m map[string]string) ([]byte, bool) {
	if len(m) == 0 {
		return dst, first
	}
	if !first {
		dst = append(dst, ',')
	}
	var stack [8]string
	keys := stack[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, `"labels":{`...)
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, k)
		dst = append(dst, ':')
		dst = appendString(dst, m[k])
	}
	return append(dst, '}'), false
}

const hex = "0123456789abcdef"

// appendString follows encoding/json's string encoder with HTML escaping:
// control characters, '"', '\\', '<', '>', '&', U+2028 and U+2029 are
// escaped and invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}

// appendStrings appends ,"k":[…] unless l is empty (it follows "pinned",
// so a comma is always due).
func appendStrings(dst []byte, k string, l []string) []byte {
	if len(l) == 0 {
		return dst
	}
	dst = append(dst, `,"`...)
	dst = append(dst, k...)
	dst = append(dst, `":[`...)
	for i, s := range l {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendString(dst, s)
	}
	return append(dst, ']')
}
