package sdk

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ParseInput decodes an input document, as the host sends it, without
// reflection (encoding/json costs several microseconds per call inside
// Wasm). Unknown fields are skipped and null means absent, so inputs
// from newer hosts still decode. Data and Settings are left empty.
func ParseInput(b []byte) (Input, error) {
	d := decoder{b: b}
	var in Input
	err := d.object(func(key string) error {
		var err error
		switch key {
		case "action":
			in.Action, err = d.str()
		case "reference":
			in.Reference, err = objectOf(&d, d.reference)
		case "media_type":
			in.MediaType, err = d.str()
		case "size":
			in.Size, err = d.int()
		case "peer":
			in.Peer, err = objectOf(&d, d.peer)
		case "node":
			in.Node, err = objectOf(&d, d.node)
		case "source":
			in.Source, err = objectOf(&d, d.source)
		case "mirrors":
			in.Mirrors, err = d.strings()
		default:
			err = d.skip(0)
		}
		return err
	})
	if err == nil {
		if d.ws(); d.i != len(d.b) {
			err = d.errorf("trailing data")
		}
	}
	if err != nil {
		return Input{}, fmt.Errorf("sdk: input document: %w", err)
	}
	return in, nil
}

type decoder struct {
	b   []byte
	i   int
	tmp []byte
}

func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{d.i}, args...)...)
}

func (d *decoder) ws() {
	for d.i < len(d.b) && (d.b[d.i] == ' ' || d.b[d.i] == '\n' || d.b[d.i] == '\t' || d.b[d.i] == '\r') {
		d.i++
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.b) {
		return d.b[d.i]
	}
	return 0
}

// null consumes a null literal if one is next.
func (d *decoder) null() bool {
	if d.peek() == 'n' && len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "null" {
		d.i += 4
		return true
	}
	return false
}

// objectOf decodes null (nil) or an object into a new T.
func objectOf[T any](d *decoder, fill func(*T) func(string) error) (*T, error) {
	if d.null() {
		return nil, nil
	}
	v := new(T)
	return v, d.object(fill(v))
}

// object calls member for each key of an object; member decodes the value.
func (d *decoder) object(member func(key string) error) error {
	if d.peek() != '{' {
		return d.errorf("want object")
	}
	d.i++
	if d.peek() == '}' {
		d.i++
		return nil
	}
	for {
		if d.peek() != '"' {
			return d.errorf("want key")
		}
		key, err := d.str()
		if err != nil {
			return err
		}
		if d.peek() != ':' {
			return d.errorf("want ':'")
		}
		d.i++
		if err := member(key); err != nil {
			return err
		}
		switch d.peek() {
		case ',':
			d.i++
		case '}':
			d.i++
			return nil
		default:
			return d.errorf("want ',' or '}'")
		}
	}
}

func (d *decoder) reference(r *Reference) func(string) error {
	return func(key string) (err error) {
		switch key {
		case "registry":
			r.Registry, err = d.str()
		case "repository":
			r.Repository, err = d.str()
		case "tag":
			r.Tag, err = d.str()
		case "digest":
			r.Digest, err = d.str()
		case "kind":
			r.Kind, err = d.str()
		default:
			err = d.skip(0)
		}
		return err
	}
}

func (d *decoder) peer(p *Peer) func(string) error {
	return func(key string) (err error) {
		switch key {
		case "id":
			p.ID, err = d.str()
		case "address":
			p.Address, err = d.str()
		case "tls_subject":
			p.TLSSubject, err = d.str()
		default:
			err = d.skip(0)
		}
		return err
	}
}

func (d *decoder) node(n *Node) func(string) error {
	return func(key string) (err error) {
		switch key {
		case "name":
			n.Name, err = d.str()
		case "labels":
			n.Labels, err = d.labels()
		default:
			err = d.skip(0)
		}
		return err
	}
}

func (d *decoder) source(s *Source) func(string) error {
	return func(key string) (err error) {
		switch key {
		case "image":
			s.Image, err = d.str()
		case "pinned":
			s.Pinned, err = d.bool()
		case "labels":
			s.Labels, err = d.labels()
		default:
			err = d.skip(0)
		}
		return err
	}
}

func (d *decoder) labels() (map[string]string, error) {
	if d.null() {
		return nil, nil
	}
	m := map[string]string{}
	err := d.object(func(key string) error {
		v, err := d.str()
		m[key] = v
		return err
	})
	return m, err
}

func (d *decoder) strings() ([]string, error) {
	if d.null() {
		return nil, nil
	}
	if d.peek() != '[' {
		return nil, d.errorf("want array")
	}
	d.i++
	out := []string{}
	if d.peek() == ']' {
		d.i++
		return out, nil
	}
	for {
		s, err := d.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		switch d.peek() {
		case ',':
			d.i++
		case ']':
			d.i++
			return out, nil
		default:
			return nil, d.errorf("want ',' or ']'")
		}
	}
}

func (d *decoder) bool() (bool, error) {
	switch {
	case d.null():
		return false, nil
	case d.peek() == 't' && len(d.b)-d.i >= 4 && string(d.b[d.i:d.i+4]) == "true":
		d.i += 4
		return true, nil
	case d.peek() == 'f' && len(d.b)-d.i >= 5 && string(d.b[d.i:d.i+5]) == "false":
		d.i += 5
		return false, nil
	}
	return false, d.errorf("want boolean")
}

func (d *decoder) int() (int64, error) {
	if d.null() {
		return 0, nil
	}
	start := d.i
	if d.i < len(d.b) && d.b[d.i] == '-' {
		d.i++
	}
	for d.i < len(d.b) && '0' <= d.b[d.i] && d.b[d.i] <= '9' {
		d.i++
	}
	n, err := strconv.ParseInt(string(d.b[start:d.i]), 10, 64)
	if err != nil {
		return 0, d.errorf("want integer: %w", err)
	}
	return n, nil
}

// str decodes null ("") or a string, as encoding/json does: invalid UTF-8
// and lone surrogates become U+FFFD.
func (d *decoder) str() (string, error) {
	if d.null() {
		return "", nil
	}
	if d.peek() != '"' {
		return "", d.errorf("want string")
	}
	d.i++
	start := d.i
	for d.i < len(d.b) { // fast path: plain ASCII, no escapes
		c := d.b[d.i]
		if c == '"' {
			d.i++
			return string(d.b[start : d.i-1]), nil
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.i++
	}
	d.tmp = append(d.tmp[:0], d.b[start:d.i]...)
	for d.i < len(d.b) {
		c := d.b[d.i]
		switch {
		case c == '"':
			d.i++
			return string(d.tmp), nil
		case c < 0x20:
			return "", d.errorf("control character in string")
		case c == '\\':
			if err := d.escape(); err != nil {
				return "", err
			}
		case c < utf8.RuneSelf:
			d.tmp = append(d.tmp, c)
			d.i++
		default:
			r, size := utf8.DecodeRune(d.b[d.i:])
			d.tmp = utf8.AppendRune(d.tmp, r)
			d.i += size
		}
	}
	return "", d.errorf("unterminated string")
}

func (d *decoder) escape() error {
	if d.i+1 >= len(d.b) {
		return d.errorf("unterminated escape")
	}
	c := d.b[d.i+1]
	d.i += 2
	switch c {
	case '"', '\\', '/':
		d.tmp = append(d.tmp, c)
	case 'b':
		d.tmp = append(d.tmp, '\b')
	case 'f':
		d.tmp = append(d.tmp, '\f')
	case 'n':
		d.tmp = append(d.tmp, '\n')
	case 'r':
		d.tmp = append(d.tmp, '\r')
	case 't':
		d.tmp = append(d.tmp, '\t')
	case 'u':
		r, ok := d.hex4()
		if !ok {
			return d.errorf("bad \\u escape")
		}
		if utf16.IsSurrogate(r) {
			if d.i+1 < len(d.b) && d.b[d.i] == '\\' && d.b[d.i+1] == 'u' {
				save := d.i
				d.i += 2
				r2, ok := d.hex4()
				if !ok {
					return d.errorf("bad \\u escape")
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					d.tmp = utf8.AppendRune(d.tmp, dec)
					return nil
				}
				d.i = save
			}
			r = utf8.RuneError
		}
		d.tmp = utf8.AppendRune(d.tmp, r)
	default:
		return d.errorf("bad escape")
	}
	return nil
}

func (d *decoder) hex4() (rune, bool) {
	if len(d.b)-d.i < 4 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(d.b[d.i:d.i+4]), 16, 32)
	if err != nil {
		return 0, false
	}
	d.i += 4
	return rune(n), true
}

// skip skips any JSON value, nested at most 64 deep.
func (d *decoder) skip(depth int) error {
	if depth > 64 {
		return d.errorf("nesting too deep")
	}
	switch c := d.peek(); {
	case c == '"':
		_, err := d.str()
		return err
	case c == '{':
		return d.object(func(string) error { return d.skip(depth + 1) })
	case c == '[':
		d.i++
		if d.peek() == ']' {
			d.i++
			return nil
		}
		for {
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			switch d.peek() {
			case ',':
				d.i++
			case ']':
				d.i++
				return nil
			default:
				return d.errorf("want ',' or ']'")
			}
		}
	case c == 't' || c == 'f':
		_, err := d.bool()
		return err
	case c == 'n':
		if d.null() {
			return nil
		}
	case c == '-' || ('0' <= c && c <= '9'):
		start := d.i
		for d.i < len(d.b) && (d.b[d.i] == '-' || d.b[d.i] == '+' || d.b[d.i] == '.' || d.b[d.i] == 'e' || d.b[d.i] == 'E' || ('0' <= d.b[d.i] && d.b[d.i] <= '9')) {
			d.i++
		}
		if _, err := strconv.ParseFloat(string(d.b[start:d.i]), 64); err != nil {
			return d.errorf("bad number")
		}
		return nil
	}
	return d.errorf("want a value")
}
