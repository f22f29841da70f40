package hostile

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/sluice-oci/sluice/core/oci"
)

// reply is what a raw request got back.
type reply struct {
	status int
	header http.Header
	body   []byte
	closed bool // the connection ended without a response
	took   time.Duration
}

// rawRequest writes payload on a fresh connection and reads one response.
func rawRequest(addr, payload string, timeout time.Duration) (reply, error) {
	start := time.Now()
	conn, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return reply{}, err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(conn, payload); err != nil {
		// The server may close while we are still writing a huge request.
		return reply{closed: true, took: time.Since(start)}, nil
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		var ne net.Error
		if ok := asNetErr(err, &ne); ok && ne.Timeout() {
			return reply{}, fmt.Errorf("no answer within %v", timeout)
		}
		return reply{closed: true, took: time.Since(start)}, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return reply{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start)}, nil
}

func asNetErr(err error, ne *net.Error) bool {
	e, ok := err.(net.Error) //nolint:errorlint // ReadResponse returns the conn's error as is
	if ok {
		*ne = e
	}
	return ok
}

// request builds an HTTP/1.1 request; headers are "Name: value" lines.
func request(method, target string, headers ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: sluice\r\nConnection: close\r\n", method, target)
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// ociCode returns the first code of an OCI error body, "" if b is not one.
func ociCode(b []byte) string { return oci.ErrorCode(b) }
