package main

import (
	"path"
	"strconv"
	"strings"
)

// commonName returns the value of the first CN attribute of an RFC 4514
// distinguished name, unescaped.
func commonName(dn string) (string, bool) {
	for _, attr := range splitUnescaped(dn, ",+") {
		typ, value, ok := strings.Cut(attr, "=")
		if !ok {
			continue
		}
		typ = strings.TrimSpace(typ)
		if strings.EqualFold(typ, "CN") || typ == "2.5.4.3" {
			return unescape(strings.TrimSpace(value))
		}
	}
	return "", false
}

// splitUnescaped splits s at the separators not preceded by a backslash.
func splitUnescaped(s, seps string) []string {
	var parts []string
	start := 0
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '\\':
			i++ // skip the escaped byte (the first of a hex pair is harmless)
		case strings.IndexByte(seps, s[i]) >= 0:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	return append(parts, s[start:])
}

// unescape resolves RFC 4514 escapes: \X for a special character and \HH
// for a byte in hex.
func unescape(v string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			b.WriteByte(v[i])
			continue
		}
		if i+1 >= len(v) {
			return "", false
		}
		if i+2 < len(v) {
			if n, err := strconv.ParseUint(v[i+1:i+3], 16, 8); err == nil {
				b.WriteByte(byte(n))
				i += 2
				continue
			}
		}
		b.WriteByte(v[i+1])
		i++
	}
	return b.String(), true
}

// match reports whether name matches the glob pattern; a malformed
// pattern matches nothing.
func match(pattern, name string) bool {
	ok, err := path.Match(pattern, name)
	return err == nil && ok
}
