package abi

import (
	"errors"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/sluice-oci/sluice/policy"
)

// ErrMalformed is wrapped by every error ParseDecision returns.
var ErrMalformed = errors.New("malformed decision")

// maxDepth bounds the nesting of values skipped under unknown keys.
const maxDepth = 32

// ParseDecision parses the decision document a guest returned:
//
//	{"allow": bool, "reasons": [string] | null, …}
//
// "allow" is required; unknown keys are skipped (forward compatibility);
// duplicate keys and keys that differ from a known one only by case are
// refused. Whatever ParseDecision accepts, encoding/json decodes to the same
// policy.Decision (a fuzz test checks it). The input is untrusted guest
// memory: no panics, no unbounded recursion.
func ParseDecision(b []byte) (policy.Decision, error) {
	p := parser{b: b}
	d, err := p.decision()
	if err != nil {
		return policy.Decision{}, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	return d, nil
}

type parser struct {
	b   []byte
	i   int
	tmp []byte
}

func (p *parser) errorf(format string, args ...any) error {
	return fmt.Errorf("offset %d: "+format, append([]any{p.i}, args...)...)
}

func (p *parser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *parser) peek() byte {
	p.ws()
	if p.i < len(p.b) {
		return p.b[p.i]
	}
	return 0
}

func (p *parser) expect(c byte) error {
	if p.peek() != c {
		return p.errorf("want %q", c)
	}
	p.i++
	return nil
}

func (p *parser) decision() (policy.Decision, error) {
	var d policy.Decision
	if err := p.expect('{'); err != nil {
		return d, err
	}
	var seenAllow, seenReasons bool
	for n := 0; ; n++ {
		if p.peek() == '}' && n == 0 {
			p.i++
			break
		}
		if p.peek() != '"' {
			return d, p.errorf("want object key")
		}
		key, err := p.str()
		if err != nil {
			return d, err
		}
		if err := p.expect(':'); err != nil {
			return d, err
		}
		switch {
		case key == "allow":
			if seenAllow {
				return d, p.errorf("duplicate key %q", key)
			}
			seenAllow = true
			if d.Allow, err = p.boolean(); err != nil {
				return d, err
			}
		case key == "reasons":
			if seenReasons {
				return d, p.errorf("duplicate key %q", key)
			}
			seenReasons = true
			if d.Reasons, err = p.strings(); err != nil {
				return d, err
			}
		case strings.EqualFold(key, "allow"), strings.EqualFold(key, "reasons"):
			return d, p.errorf("key %q differs from a known key only by case", key)
		default:
			if err := p.skip(0); err != nil {
				return d, err
			}
		}
		c := p.peek()
		p.i++
		if c == '}' {
			break
		}
		if c != ',' {
			p.i--
			return d, p.errorf("want ',' or '}'")
		}
	}
	if !seenAllow {
		return d, errors.New(`missing key "allow"`)
	}
	if p.ws(); p.i != len(p.b) {
		return d, p.errorf("trailing data")
	}
	return d, nil
}

func (p *parser) boolean() (bool, error) {
	p.ws()
	rest := p.b[p.i:]
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i += 4
		return true, nil
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
		return false, nil
	}
	return false, p.errorf("want true or false")
}

func (p *parser) literal(s string) error {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return p.errorf("want %s", s)
	}
	p.i += len(s)
	return nil
}

// strings parses null or an array of strings.
func (p *parser) strings() ([]string, error) {
	switch p.peek() {
	case 'n':
		return nil, p.literal("null")
	case '[':
		p.i++
	default:
		return nil, p.errorf("want array of strings")
	}
	var out []string
	if p.peek() == ']' {
		p.i++
		return out, nil
	}
	for {
		if p.peek() != '"' {
			return nil, p.errorf("want string")
		}
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
		c := p.peek()
		p.i++
		if c == ']' {
			return out, nil
		}
		if c != ',' {
			p.i--
			return nil, p.errorf("want ',' or ']'")
		}
	}
}

// str parses a string at p.i (which holds '"'), as encoding/json does:
// invalid UTF-8 and lone surrogates become U+FFFD.
func (p *parser) str() (string, error) {
	p.i++ // opening quote
	p.tmp = p.tmp[:0]
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(p.tmp), nil
		case c < 0x20:
			return "", p.errorf("control character in string")
		case c == '\\':
			if err := p.escape(); err != nil {
				return "", err
			}
		case c < utf8.RuneSelf:
			p.tmp = append(p.tmp, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(p.b[p.i:])
			p.tmp = utf8.AppendRune(p.tmp, r) // RuneError for invalid bytes
			p.i += size
		}
	}
	return "", p.errorf("unterminated string")
}

func (p *parser) escape() error {
	if p.i+1 >= len(p.b) {
		return p.errorf("unterminated escape")
	}
	c := p.b[p.i+1]
	p.i += 2
	switch c {
	case '"', '\\', '/':
		p.tmp = append(p.tmp, c)
	case 'b':
		p.tmp = append(p.tmp, '\b')
	case 'f':
		p.tmp = append(p.tmp, '\f')
	case 'n':
		p.tmp = append(p.tmp, '\n')
	case 'r':
		p.tmp = append(p.tmp, '\r')
	case 't':
		p.tmp = append(p.tmp, '\t')
	case 'u':
		r, ok := p.hex4()
		if !ok {
			return p.errorf("bad \\u escape")
		}
		if utf16.IsSurrogate(r) {
			// A pair only when a second \u escape follows and combines.
			if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
				save := p.i
				p.i += 2
				r2, ok := p.hex4()
				if !ok {
					return p.errorf("bad \\u escape")
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					p.tmp = utf8.AppendRune(p.tmp, dec)
					return nil
				}
				p.i = save
			}
			r = utf8.RuneError
		}
		p.tmp = utf8.AppendRune(p.tmp, r)
	default:
		return p.errorf("bad escape \\%c", c)
	}
	return nil
}

func (p *parser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	p.i += 4
	return r, true
}

// skip validates and skips any JSON value, nested at most maxDepth deep.
func (p *parser) skip(depth int) error {
	if depth > maxDepth {
		return p.errorf("nesting deeper than %d", maxDepth)
	}
	switch c := p.peek(); {
	case c == '"':
		_, err := p.str()
		return err
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || ('0' <= c && c <= '9'):
		return p.number()
	case c == '[' || c == '{':
		closer := byte(']')
		if c == '{' {
			closer = '}'
		}
		p.i++
		if p.peek() == closer {
			p.i++
			return nil
		}
		for {
			if c == '{' {
				if p.peek() != '"' {
					return p.errorf("want object key")
				}
				if _, err := p.str(); err != nil {
					return err
				}
				if err := p.expect(':'); err != nil {
					return err
				}
			}
			if err := p.skip(depth + 1); err != nil {
				return err
			}
			next := p.peek()
			p.i++
			if next == closer {
				return nil
			}
			if next != ',' {
				p.i--
				return p.errorf("want ',' or %q", closer)
			}
		}
	}
	return p.errorf("want a value")
}

// number validates a JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func (p *parser) number() error {
	digits := func() int {
		n := 0
		for p.i < len(p.b) && '0' <= p.b[p.i] && p.b[p.i] <= '9' {
			p.i++
			n++
		}
		return n
	}
	if p.b[p.i] == '-' {
		p.i++
	}
	switch {
	case p.i < len(p.b) && p.b[p.i] == '0':
		p.i++
	case digits() == 0:
		return p.errorf("bad number")
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		p.i++
		if digits() == 0 {
			return p.errorf("bad number")
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if digits() == 0 {
			return p.errorf("bad number")
		}
	}
	return nil
}
