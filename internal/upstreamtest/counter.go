package upstreamtest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
)

// Kind groups requests by what they ask for.
type Kind string

// Request kinds.
const (
	KindManifest Kind = "manifest" // /v2/<name>/manifests/<ref>
	KindBlob     Kind = "blob"     // /v2/<name>/blobs/<digest>
	KindUpload   Kind = "upload"   // /v2/<name>/blobs/uploads/…
	KindToken    Kind = "token"    // the token server
	KindOther    Kind = "other"    // /v2/ and anything else
)

// KindOf classifies a request path.
func KindOf(path string) Kind {
	switch {
	case path == tokenPath:
		return KindToken
	case strings.Contains(path, "/blobs/uploads"):
		return KindUpload
	case strings.Contains(path, "/blobs/"):
		return KindBlob
	case strings.Contains(path, "/manifests/"):
		return KindManifest
	}
	return KindOther
}

// Request is one request the front of the registry answered.
type Request struct {
	Method string
	Path   string
	Query  string
	Status int
	// Bytes is the response body length written.
	Bytes int64
	// Authorization is the scheme of the Authorization header ("Basic",
	// "Bearer") or empty.
	Authorization string
}

// Stats adds up requests and response body bytes.
type Stats struct {
	Requests int
	Bytes    int64
}

// Counter counts the requests and response bytes of a handler, per path
// and per kind. Safe for concurrent use.
type Counter struct {
	mu  sync.Mutex
	log []Request
	gen int // Reset count: a request started before a Reset is not counted
}

// Wrap counts what h answers.
func (c *Counter) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scheme, _, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		c.mu.Lock()
		c.log = append(c.log, Request{Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery,
			Status: http.StatusOK, Authorization: scheme})
		i, gen := len(c.log)-1, c.gen
		c.mu.Unlock()
		h.ServeHTTP(&countingWriter{ResponseWriter: w, c: c, i: i, gen: gen}, r)
	})
}

// update changes the record of request i unless the counter was reset.
func (c *Counter) update(i, gen int, f func(*Request)) {
	c.mu.Lock()
	if gen == c.gen {
		f(&c.log[i])
	}
	c.mu.Unlock()
}

// Requests returns every request counted so far, in order.
func (c *Counter) Requests() []Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Request(nil), c.log...)
}

// Path adds up the requests for one path (any method).
func (c *Counter) Path(path string) Stats {
	return c.sum(func(r Request) bool { return r.Path == path })
}

// Kind adds up the requests of one kind (any method).
func (c *Counter) Kind(k Kind) Stats {
	return c.sum(func(r Request) bool { return KindOf(r.Path) == k })
}

// Total adds up every request.
func (c *Counter) Total() Stats { return c.sum(func(Request) bool { return true }) }

// Reset forgets what was counted.
func (c *Counter) Reset() {
	c.mu.Lock()
	c.log = nil
	c.gen++
	c.mu.Unlock()
}

func (c *Counter) sum(match func(Request) bool) Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Stats
	for _, r := range c.log {
		if match(r) {
			s.Requests++
			s.Bytes += r.Bytes
		}
	}
	return s
}

// countingWriter records the status and counts body bytes as they are
// written: before they can reach the client, so a client that has read a
// body always finds it counted.
type countingWriter struct {
	http.ResponseWriter
	c      *Counter
	i, gen int
	wrote  bool
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.wrote {
		w.wrote = true
		w.c.update(w.i, w.gen, func(r *Request) { r.Status = code })
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	w.wrote = true
	w.c.update(w.i, w.gen, func(r *Request) { r.Bytes += int64(len(b)) })
	n, err := w.ResponseWriter.Write(b)
	if n < len(b) {
		w.c.update(w.i, w.gen, func(r *Request) { r.Bytes -= int64(len(b) - n) })
	}
	return n, err
}

// Flush lets a reverse proxy stream through the counter.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Hijack lets the front hang up on a client.
func (w *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("upstreamtest: %T cannot hijack", w.ResponseWriter)
	}
	return hj.Hijack()
}

// Unwrap gives http.ResponseController the writer underneath.
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
