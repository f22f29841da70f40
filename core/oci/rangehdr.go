package oci

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

// ByteRange is a resolved single byte range [Start, Start+Length).
type ByteRange struct {
	Start, Length int64
}

// ContentRange formats the Content-Range header value for size.
func (r ByteRange) ContentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", r.Start, r.Start+r.Length-1, size)
}

// ParseRange parses a Range header against a content size. It returns
// ok=false and no error when there is no Range header. Only one range is
// served; several ranges, a malformed header or a range outside the
// content return a 416 *Error (callers add Content-Range: bytes */size).
func ParseRange(h string, size int64) (r ByteRange, ok bool, err error) {
	if h == "" {
		return ByteRange{}, false, nil
	}
	bad := func(format string, args ...any) (ByteRange, bool, error) {
		return ByteRange{}, false, Errorf(http.StatusRequestedRangeNotSatisfiable, CodeRangeInvalid, format, args...)
	}
	spec, found := strings.CutPrefix(h, "bytes=")
	if !found || len(h) > 200 {
		return bad("unsupported Range %q", truncate(h))
	}
	if strings.Contains(spec, ",") {
		return bad("multiple ranges are not supported")
	}
	first, last, found := strings.Cut(strings.TrimSpace(spec), "-")
	if !found {
		return bad("malformed Range %q", truncate(h))
	}
	if first == "" { // suffix: last N bytes
		n, err := parseUint(last)
		if err != nil || n == 0 {
			return bad("malformed Range %q", truncate(h))
		}
		if size == 0 {
			return bad("range outside content of %d bytes", size)
		}
		n = min(n, size)
		return ByteRange{Start: size - n, Length: n}, true, nil
	}
	start, err := parseUint(first)
	if err != nil {
		return bad("malformed Range %q", truncate(h))
	}
	if start >= size {
		return bad("range starts at %d, outside content of %d bytes", start, size)
	}
	end := size - 1
	if last != "" {
		e, err := parseUint(last)
		if err != nil || e < start {
			return bad("malformed Range %q", truncate(h))
		}
		end = min(e, size-1)
	}
	return ByteRange{Start: start, Length: end - start + 1}, true, nil
}

func parseUint(s string) (int64, error) {
	if s == "" || len(s) > 19 || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("not a number: %q", s)
	}
	return strconv.ParseInt(s, 10, 64)
}
