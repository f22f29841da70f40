package sdk

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// ParseInput decodes an input document, as the host sends it. Unknown
// fields are skipped and null means absent, so inputs from newer hosts
// still decode. Data and Settings are left empty.
//
// It is written for the cost model of Go inside Wasm (every function call
// and loop iteration costs several times native; the host's deadline check
// adds a few instructions to each): no reflection, no closures, and three allocations per
// document — one copy of the bytes that every string slices into, one
// block for the nested objects, labels maps when present.
func ParseInput(b []byte) (Input, error) {
	d := decoder{s: string(b)}
	var in Input
	var st *storage
	alloc := func() *storage {
		if st == nil {
			st = new(storage)
		}
		return st
	}
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		switch d.key() {
		case "action":
			in.Action = d.str()
		case "reference":
			if !d.null() {
				in.Reference = &alloc().ref
				d.reference(in.Reference)
			}
		case "media_type":
			in.MediaType = d.str()
		case "size":
			in.Size = d.int()
		case "peer":
			if !d.null() {
				in.Peer = &alloc().peer
				d.peer(in.Peer)
			}
		case "node":
			if !d.null() {
				in.Node = &alloc().node
				d.node(in.Node)
			}
		case "source":
			if !d.null() {
				in.Source = &alloc().source
				d.source(in.Source)
			}
		case "upstream":
			if !d.null() {
				in.Upstream = &alloc().upstream
				d.upstream(in.Upstream)
			}
		case "mirrors":
			if !d.null() {
				in.Mirrors = d.strings(alloc().mirrors[:0])
			}
		default:
			d.skip(0)
		}
	}
	if d.err == nil {
		if d.ws(); d.i != len(d.s) {
			d.fail("trailing data")
		}
	}
	if d.err != nil {
		return Input{}, fmt.Errorf("sdk: input document: %w", d.err)
	}
	return in, nil
}

// storage holds the nested objects of one input in one allocation.
type storage struct {
	ref      Reference
	peer     Peer
	node     Node
	source   Source
	upstream Upstream
	mirrors  [4]string
}

// decoder reads JSON from s. The first error sticks in err; after it every
// method returns zero values.
type decoder struct {
	s   string
	i   int
	err error
	tmp []byte
}

func (d *decoder) fail(msg string) {
	if d.err == nil {
		d.err = fmt.Errorf("offset %d: %s", d.i, msg)
	}
	d.i = len(d.s)
}

func (d *decoder) ws() {
	for d.i < len(d.s) && (d.s[d.i] == ' ' || d.s[d.i] == '\n' || d.s[d.i] == '\t' || d.s[d.i] == '\r') {
		d.i++
	}
}

func (d *decoder) peek() byte {
	d.ws()
	if d.i < len(d.s) {
		return d.s[d.i]
	}
	return 0
}

func (d *decoder) open(c byte) {
	if d.peek() != c {
		d.fail("want " + string(rune(c)))
		return
	}
	d.i++
}

// first reports whether a container just opened has a first element.
func (d *decoder) first(closer byte) bool {
	if d.err != nil {
		return false
	}
	if d.peek() == closer {
		d.i++
		return false
	}
	return true
}

// next consumes ',' (true: another element follows) or the closer (false).
func (d *decoder) next(closer byte) bool {
	switch d.peek() {
	case ',':
		d.i++
		return d.err == nil
	case closer:
		d.i++
		return false
	}
	d.fail("want ',' or " + string(rune(closer)))
	return false
}

// key reads an object key and the colon after it.
func (d *decoder) key() string {
	if d.peek() != '"' {
		d.fail("want key")
		return ""
	}
	k := d.str()
	if d.peek() != ':' {
		d.fail("want ':'")
		return ""
	}
	d.i++
	return k
}

// null consumes a null literal if one is next.
func (d *decoder) null() bool {
	if d.peek() == 'n' && len(d.s)-d.i >= 4 && d.s[d.i:d.i+4] == "null" {
		d.i += 4
		return true
	}
	return false
}

func (d *decoder) reference(r *Reference) {
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		switch d.key() {
		case "registry":
			r.Registry = d.str()
		case "repository":
			r.Repository = d.str()
		case "tag":
			r.Tag = d.str()
		case "digest":
			r.Digest = d.str()
		case "kind":
			r.Kind = d.str()
		default:
			d.skip(0)
		}
	}
}

func (d *decoder) peer(p *Peer) {
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		switch d.key() {
		case "id":
			p.ID = d.str()
		case "address":
			p.Address = d.str()
		case "tls_subject":
			p.TLSSubject = d.str()
		default:
			d.skip(0)
		}
	}
}

func (d *decoder) node(n *Node) {
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		switch d.key() {
		case "name":
			n.Name = d.str()
		case "labels":
			n.Labels = d.labels()
		default:
			d.skip(0)
		}
	}
}

func (d *decoder) source(s *Source) {
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		switch d.key() {
		case "image":
			s.Image = d.str()
		case "pinned":
			s.Pinned = d.bool()
		case "labels":
			s.Labels = d.labels()
		case "registries":
			if !d.null() {
				s.Registries = d.strings(nil)
			}
		case "repositories":
			if !d.null() {
				s.Repositories = d.strings(nil)
			}
		default:
			d.skip(0)
		}
	}
}

func (d *decoder) upstream(u *Upstream) {
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		switch d.key() {
		case "endpoint":
			u.Endpoint = d.str()
		case "credentials":
			u.Credentials = d.bool()
		default:
			d.skip(0)
		}
	}
}

func (d *decoder) labels() map[string]string {
	if d.null() {
		return nil
	}
	m := map[string]string{}
	d.open('{')
	for more := d.first('}'); more; more = d.next('}') {
		k := d.key()
		m[k] = d.str()
	}
	return m
}

// strings appends the elements of a string array to out.
func (d *decoder) strings(out []string) []string {
	d.open('[')
	for more := d.first(']'); more; more = d.next(']') {
		out = append(out, d.str())
	}
	return out
}

func (d *decoder) bool() bool {
	switch {
	case d.null():
		return false
	case d.peek() == 't' && len(d.s)-d.i >= 4 && d.s[d.i:d.i+4] == "true":
		d.i += 4
		return true
	case d.peek() == 'f' && len(d.s)-d.i >= 5 && d.s[d.i:d.i+5] == "false":
		d.i += 5
		return false
	}
	d.fail("want boolean")
	return false
}

func (d *decoder) int() int64 {
	if d.null() {
		return 0
	}
	start := d.i
	if d.i < len(d.s) && d.s[d.i] == '-' {
		d.i++
	}
	for d.i < len(d.s) && '0' <= d.s[d.i] && d.s[d.i] <= '9' {
		d.i++
	}
	n, err := strconv.ParseInt(d.s[start:d.i], 10, 64)
	if err != nil {
		d.fail("want integer")
	}
	return n
}

// str decodes null ("") or a string, as encoding/json does: invalid UTF-8
// and lone surrogates become U+FFFD. A string without escapes is a slice
// of the document (no allocation).
func (d *decoder) str() string {
	if d.null() {
		return ""
	}
	if d.peek() != '"' {
		d.fail("want string")
		return ""
	}
	d.i++
	start := d.i
	for d.i < len(d.s) { // fast path: plain ASCII, no escapes
		c := d.s[d.i]
		if c == '"' {
			d.i++
			return d.s[start : d.i-1]
		}
		if c == '\\' || c < 0x20 || c >= utf8.RuneSelf {
			break
		}
		d.i++
	}
	d.tmp = append(d.tmp[:0], d.s[start:d.i]...)
	for d.i < len(d.s) {
		c := d.s[d.i]
		switch {
		case c == '"':
			d.i++
			return string(d.tmp)
		case c < 0x20:
			d.fail("control character in string")
			return ""
		case c == '\\':
			d.escape()
		case c < utf8.RuneSelf:
			d.tmp = append(d.tmp, c)
			d.i++
		default:
			r, size := utf8.DecodeRuneInString(d.s[d.i:])
			d.tmp = utf8.AppendRune(d.tmp, r)
			d.i += size
		}
	}
	d.fail("unterminated string")
	return ""
}

func (d *decoder) escape() {
	if d.i+1 >= len(d.s) {
		d.fail("unterminated escape")
		return
	}
	c := d.s[d.i+1]
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
		r := d.hex4()
		if utf16.IsSurrogate(r) {
			r2 := utf8.RuneError
			if d.i+1 < len(d.s) && d.s[d.i] == '\\' && d.s[d.i+1] == 'u' {
				save := d.i
				d.i += 2
				if r2 = utf16.DecodeRune(r, d.hex4()); r2 == utf8.RuneError {
					d.i = save
				}
			}
			r = r2
		}
		d.tmp = utf8.AppendRune(d.tmp, r)
	default:
		d.fail("bad escape")
	}
}

func (d *decoder) hex4() rune {
	if len(d.s)-d.i < 4 {
		d.fail("bad \\u escape")
		return 0
	}
	n, err := strconv.ParseUint(d.s[d.i:d.i+4], 16, 32)
	if err != nil {
		d.fail("bad \\u escape")
		return 0
	}
	d.i += 4
	return rune(n)
}

// skip skips any JSON value, nested at most 64 deep.
func (d *decoder) skip(depth int) {
	if depth > 64 {
		d.fail("nesting too deep")
		return
	}
	switch c := d.peek(); {
	case c == '"':
		d.str()
	case c == '{':
		d.i++
		for more := d.first('}'); more; more = d.next('}') {
			d.key()
			d.skip(depth + 1)
		}
	case c == '[':
		d.i++
		for more := d.first(']'); more; more = d.next(']') {
			d.skip(depth + 1)
		}
	case c == 't' || c == 'f':
		d.bool()
	case c == 'n' && d.null():
	case c == '-' || ('0' <= c && c <= '9'):
		start := d.i
		for d.i < len(d.s) && (d.s[d.i] == '-' || d.s[d.i] == '+' || d.s[d.i] == '.' || d.s[d.i] == 'e' || d.s[d.i] == 'E' || ('0' <= d.s[d.i] && d.s[d.i] <= '9')) {
			d.i++
		}
		if _, err := strconv.ParseFloat(d.s[start:d.i], 64); err != nil {
			d.fail("bad number")
		}
	default:
		d.fail("want a value")
	}
}
