package hostile

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// A case is one hostile request and what may come back.
type hcase struct {
	name    string
	payload string
	// status lists the acceptable statuses (all 4xx).
	status []int
	// code is the OCI error code wanted; "" accepts any code.
	code string
	// plain accepts net/http's own plain-text refusal (a request it cannot
	// parse never reaches sluice's handler, so it carries no OCI body).
	plain bool
	// closed accepts a connection closed without a response.
	closed bool
}

const registriesYAML = `mirrors:
  docker.io:
    endpoint:
      - "https://registry-1.docker.io"
`

func TestHostile(t *testing.T) {
	dir := t.TempDir()
	regs := filepath.Join(dir, "registries.yaml")
	if err := os.WriteFile(regs, []byte(registriesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	nd := filepath.Join(dir, "node")
	n, err := cluster.Start(t.Context(), sluiceBin, cluster.Spec{
		Name: "hostile", IP: "127.0.0.81", Store: "oci:" + filepath.Join(nd, "oci"), DataDir: nd,
		Args: []string{"--read-header-timeout", "1s", "--registries", regs, "--max-peer-fetches", "8"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Stop()
	defer func() {
		if t.Failed() {
			t.Logf("node log (tail):\n%s", tail(n.Log(), 6000))
		}
	}()
	ctx := t.Context()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/hostile:1.0", LayerSizes: []int64{1 << 20, 4 << 10}, Seed: 81})
	if err != nil {
		t.Fatal(err)
	}
	st, err := ocidir.Open(filepath.Join(nd, "oci"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := img.WriteLayout(ctx, st); err != nil {
		t.Fatal(err)
	}
	// An image of an unshared registry: its content must never be served,
	// whatever registry a request names.
	private, err := testimage.Build(testimage.Spec{Name: "quay.io/private/app:1.0", LayerSizes: []int64{8 << 10}, Seed: 82})
	if err != nil {
		t.Fatal(err)
	}
	if err := private.WriteLayout(ctx, st); err != nil {
		t.Fatal(err)
	}
	base := n.RegistryURL()
	if !cluster.WaitFor(ctx, 10*time.Second, func() bool {
		resp, err := http.Get(base + "/v2/library/hostile/manifests/1.0?ns=docker.io")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}) {
		t.Fatal("the node does not serve its image")
	}
	pullImage(t, base, img)
	rssBefore, _ := n.Metric(ctx, "process_resident_memory_bytes")

	addr := n.RegistryAddr()
	layer := img.Largest()
	cases := hostileCases(layer.Digest, layer.Size, private.Largest().Digest)
	if len(cases) < 50 {
		t.Fatalf("only %d cases", len(cases))
	}
	t.Run("requests", func(t *testing.T) {
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) { checkCase(t, addr, c) })
		}
	})
	t.Run("slowloris", func(t *testing.T) { slowloris(t, addr) })
	t.Run("many connections", func(t *testing.T) { manyConnections(t, addr, layer.Digest) })
	t.Run("idle connections", func(t *testing.T) { idleConnections(t, addr) })

	// Afterwards: alive, bounded memory, no panic or race, a valid pull.
	if n.Exited() {
		t.Fatal("the node exited")
	}
	pullImage(t, base, img)
	rssAfter, err := n.Metric(ctx, "process_resident_memory_bytes")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d request cases; RSS %.1f MiB before, %.1f MiB after (race detector on)", len(cases), rssBefore/(1<<20), rssAfter/(1<<20))
	if rssAfter > rssBefore+256<<20 {
		t.Errorf("RSS grew from %.1f to %.1f MiB", rssBefore/(1<<20), rssAfter/(1<<20))
	}
	for _, bad := range []string{"WARNING: DATA RACE", "panic serving", "goroutine ", "fatal error"} {
		if strings.Contains(n.Log(), bad) {
			t.Errorf("node log holds %q", bad)
		}
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func checkCase(t *testing.T, addr string, c hcase) {
	r, err := rawRequest(addr, c.payload, 10*time.Second)
	if err != nil {
		t.Fatalf("%v", err)
	}
	if r.closed {
		if !c.closed {
			t.Fatalf("connection closed without a response")
		}
		return
	}
	if r.status >= 500 {
		t.Fatalf("status %d: %.300q", r.status, r.body)
	}
	if !containsInt(c.status, r.status) {
		t.Fatalf("status %d, want %v: %.300q", r.status, c.status, r.body)
	}
	if r.took > 2*time.Second {
		t.Errorf("took %v", r.took)
	}
	if strings.HasPrefix(c.payload, "HEAD ") {
		if len(r.body) != 0 {
			t.Fatalf("HEAD answered with a body")
		}
		return
	}
	code := ociCode(r.body)
	switch {
	case code == "" && c.plain:
		return
	case code == "":
		t.Fatalf("status %d without an OCI error body: %.300q", r.status, r.body)
	case r.header.Get("Content-Type") != "application/json":
		t.Fatalf("OCI error with Content-Type %q", r.header.Get("Content-Type"))
	case c.code != "" && code != c.code:
		t.Fatalf("code %s, want %s", code, c.code)
	}
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// pullImage pulls the image by tag and every blob by digest, checking
// every digest.
func pullImage(t *testing.T, base string, img *testimage.Image) {
	t.Helper()
	get := func(p string) []byte {
		resp, err := http.Get(base + p)
		if err != nil {
			t.Fatalf("GET %s: %v", p, err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET %s: %d, %v", p, resp.StatusCode, err)
		}
		return b
	}
	if d := digest.FromBytes(get("/v2/library/hostile/manifests/1.0?ns=docker.io")); d != img.Target.Digest {
		t.Fatalf("tag resolves to %s, want %s", d, img.Target.Digest)
	}
	for _, d := range img.Digests() {
		kind := "blobs"
		if store.IsManifestOrIndex(img.Types[d]) {
			kind = "manifests"
		}
		sum := sha256.Sum256(get(fmt.Sprintf("/v2/library/hostile/%s/%s?ns=docker.io", kind, d)))
		if "sha256:"+hex.EncodeToString(sum[:]) != d.String() {
			t.Fatalf("%s %s: wrong bytes", kind, d)
		}
	}
}

// slowloris: clients that send their headers a byte at a time are cut off
// by --read-header-timeout (1 s here), all of them, concurrently.
func slowloris(t *testing.T, addr string) {
	const clients = 40
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			start := time.Now()
			msg := fmt.Sprintf("GET /v2/library/slow%d/manifests/1.0 HTTP/1.1\r\nHost: sluice\r\nX-Slow: %s", i, strings.Repeat("a", 200))
			for j := 0; j < len(msg); j++ {
				_ = conn.SetWriteDeadline(time.Now().Add(2 * time.Second))
				if _, err := conn.Write([]byte{msg[j]}); err != nil {
					break // cut off
				}
				if time.Since(start) > 8*time.Second {
					errs <- fmt.Errorf("slow client %d still connected after %v", i, time.Since(start))
					return
				}
				time.Sleep(100 * time.Millisecond)
			}
			// Whatever was written, the server must have closed by now or
			// close within the timeout: a read sees EOF (or a 408).
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			b, err := io.ReadAll(conn)
			if ne, ok := err.(net.Error); ok && ne.Timeout() { //nolint:errorlint // a net.Error as returned
				errs <- fmt.Errorf("slow client %d: the server kept the connection open", i)
				return
			}
			if took := time.Since(start); took > 4*time.Second {
				errs <- fmt.Errorf("slow client %d cut off only after %v", i, took)
				return
			}
			if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") && !strings.HasPrefix(string(b), "HTTP/1.1 400") {
				errs <- fmt.Errorf("slow client %d got %.100q", i, b)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// manyConnections: 500 clients at once, a mix of hostile and valid
// requests; every one is answered within the deadline and none with 5xx.
func manyConnections(t *testing.T, addr string, layer digest.Digest) {
	const clients = 500
	targets := []string{
		"/v2/library/hostile/blobs/" + layer.String() + "?ns=docker.io",
		"/v2/library/missing/manifests/1.0?ns=docker.io",
		"/v2/../../etc/passwd/manifests/x",
		"/v2/library/hostile/blobs/sha256:nope",
		"/v2/library/hostile/manifests/1.0?ns=quay.io",
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	tr := &http.Transport{MaxConnsPerHost: 0, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	var wg sync.WaitGroup
	var ok, refused, failed atomic.Int64
	start := make(chan struct{})
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+targets[i%len(targets)], nil)
			resp, err := client.Do(req)
			if err != nil {
				failed.Add(1)
				t.Errorf("client %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode >= 500:
				failed.Add(1)
				t.Errorf("client %d: status %d", i, resp.StatusCode)
			case resp.StatusCode >= 400:
				refused.Add(1)
			default:
				ok.Add(1)
			}
		}()
	}
	t0 := time.Now()
	close(start)
	wg.Wait()
	t.Logf("%d concurrent clients in %v: %d ok, %d refused (4xx), %d failed", clients, time.Since(t0).Round(time.Millisecond), ok.Load(), refused.Load(), failed.Load())
}

// idleConnections: 300 connections that send nothing are closed by the
// header timeout and do not stop the node from answering others.
func idleConnections(t *testing.T, addr string) {
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 300 {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		conns = append(conns, c)
	}
	r, err := rawRequest(addr, request("GET", "/v2/"), 5*time.Second)
	if err != nil || r.status != 200 {
		t.Fatalf("with 300 idle connections open: %+v, %v", r, err)
	}
	time.Sleep(1500 * time.Millisecond)
	buf := make([]byte, 1)
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err == nil {
			continue // a 408 byte; the close follows
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() { //nolint:errorlint // a net.Error as returned
			t.Fatalf("idle connection %d still open after the header timeout", i)
		}
	}
}
