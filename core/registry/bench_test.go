package registry_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// Benchmarks of the local serve path on real loopback TCP. Each compares
// sluice with a baseline measured in the same run, interleaved request by
// request so that noise from other work on the machine hits both alike:
//
//	go test -run '^$' -bench . -benchtime 20x ./core/registry/
//
// The server=baseline sub-benchmarks give the baseline's own figures; the
// server=sluice ones report sluice's (MB/s, ns/op) and ratio-vs-baseline
// (throughput ratio, higher is better, target ≥ 0.9).

const benchBlobSize = 64 << 20

// benchEnv is an image with one layer of a given size in an oci-layout
// store, served by sluice and by the sendfile baseline on loopback.
type benchEnv struct {
	img      *testimage.Image
	layer    ocispec.Descriptor
	path     string // the layer's file
	sluice   string // base URL
	baseline string // base URL
	client   *http.Client
}

func newBenchEnv(b *testing.B, layerSize int64) *benchEnv {
	b.Helper()
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/bench:1.0", LayerSizes: []int64{layerSize}, Seed: 3})
	if err != nil {
		b.Fatal(err)
	}
	st, err := ocidir.Open(b.TempDir(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := img.WriteLayout(b.Context(), st); err != nil {
		b.Fatal(err)
	}
	e := &benchEnv{img: img, layer: img.Largest()}
	if e.path, err = st.BlobPath(e.layer.Digest); err != nil {
		b.Fatal(err)
	}
	e.sluice = serve(b, registry.New(st))
	e.baseline = serveSendfile(b, e.path)
	e.client = &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true, MaxIdleConnsPerHost: 4}}
	b.Cleanup(e.client.CloseIdleConnections)
	return e
}

// serve runs h on a loopback listener with a plain http.Server, as
// `sluice run` does.
func serve(b *testing.B, h http.Handler) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Close() })
	return "http://" + ln.Addr().String()
}

// serveSendfile is the throughput baseline: the least an HTTP server can
// do to send a file. It reads a request head, writes a fixed 200 head with
// Content-Length and io.Copy's the *os.File to the *net.TCPConn, which is
// sendfile(2) on Linux. It speaks just enough HTTP/1.1 (keep-alive) for
// the same net/http client to fetch from both servers, so the only
// difference measured is the server.
func serveSendfile(b *testing.B, path string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go sendfileConn(c.(*net.TCPConn), path)
		}
	}()
	return "http://" + ln.Addr().String()
}

func sendfileConn(c *net.TCPConn, path string) {
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		// Request head: read to the empty line; the requests have no body.
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
		}
		f, err := os.Open(path)
		if err != nil {
			return
		}
		st, _ := f.Stat()
		head := "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: " + strconv.FormatInt(st.Size(), 10) + "\r\n\r\n"
		if _, err := io.WriteString(c, head); err != nil {
			f.Close()
			return
		}
		_, err = io.Copy(c, f) // *TCPConn.ReadFrom(*os.File): sendfile
		f.Close()
		if err != nil {
			return
		}
	}
}

// fetch GETs url and reads the body with a 1 MiB buffer (large reads
// bypass the transport's bufio), returning the bytes read.
func fetch(ctx context.Context, c *http.Client, url string, buf []byte) (int64, error) {
	return fetchAs(ctx, c, url, "", buf)
}

// fetchAs is fetch with the peer header set to peer when it is not empty.
func fetchAs(ctx context.Context, c *http.Client, url, peer string, buf []byte) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, err
	}
	if peer != "" {
		req.Header.Set(registry.PeerHeader, peer)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var n int64
	for {
		m, err := resp.Body.Read(buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
	}
}

// compare runs subject as the timed operation and baseline beside it with
// the timer stopped, alternating which goes first so that neither gains
// from order. It reports ratio-vs-baseline: the median over pairs of
// baseline time / subject time, a throughput ratio (1 means as fast as the
// baseline); the median of close pairs shrugs off load spikes from other
// work on the machine.
func compare(b *testing.B, baseline, subject func() error) {
	b.Helper()
	var ratios []float64
	runBase := func() time.Duration {
		b.StopTimer()
		defer b.StartTimer()
		start := time.Now()
		if err := baseline(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	runSubj := func() time.Duration {
		start := time.Now()
		if err := subject(); err != nil {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	for i := 0; b.Loop(); i++ {
		var tb, ts time.Duration
		if i%2 == 0 {
			tb, ts = runBase(), runSubj()
		} else {
			ts, tb = runSubj(), runBase()
		}
		ratios = append(ratios, float64(tb)/float64(ts))
	}
	b.ReportMetric(median(ratios), "ratio-vs-baseline")
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkBlobGET is a full GET of a 64 MiB layer from an oci-layout
// store (sendfile through net/http) against the raw sendfile baseline.
func BenchmarkBlobGET(b *testing.B) {
	e := newBenchEnv(b, benchBlobSize)
	path := "/v2/library/bench/blobs/" + e.layer.Digest.String()
	buf := make([]byte, 1<<20)
	getAs := func(url, peer string) func() error {
		return func() error {
			n, err := fetchAs(b.Context(), e.client, url, peer, buf)
			if err == nil && n != e.layer.Size {
				err = fmt.Errorf("read %d bytes of %d", n, e.layer.Size)
			}
			return err
		}
	}
	get := func(url string) func() error { return getAs(url, "") }
	// Warm the page cache and the connections (and, for peers, the
	// verification of the file).
	for _, f := range []func() error{get(e.baseline + path), get(e.sluice + path), getAs(e.sluice+path, "bench-peer")} {
		if err := f(); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("server=baseline", func(b *testing.B) {
		b.SetBytes(e.layer.Size)
		for b.Loop() {
			if err := get(e.baseline + path)(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("server=sluice", func(b *testing.B) {
		b.SetBytes(e.layer.Size)
		compare(b, get(e.baseline+path), get(e.sluice+path))
	})
	// A peer is served the verified file with sendfile too.
	b.Run("server=sluice-peer", func(b *testing.B) {
		b.SetBytes(e.layer.Size)
		compare(b, get(e.baseline+path), getAs(e.sluice+path, "bench-peer"))
	})
}

// BenchmarkManifestGET is a GET of an image manifest by tag (resolve in
// index.json, read, digest check, headers) against a baseline handler on
// the same kind of server that writes the same bytes and headers from
// memory: what serving a manifest costs beyond HTTP itself.
func BenchmarkManifestGET(b *testing.B) {
	e := newBenchEnv(b, 4096)
	body := e.img.Blobs[e.img.Target.Digest]
	static := serve(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", e.img.Target.MediaType)
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Docker-Content-Digest", e.img.Target.Digest.String())
		_, _ = w.Write(body)
	}))
	path := "/v2/library/bench/manifests/1.0?ns=docker.io"
	buf := make([]byte, 64<<10)
	get := func(url string) func() error {
		return func() error {
			n, err := fetch(b.Context(), e.client, url, buf)
			if err == nil && n != int64(len(body)) {
				err = fmt.Errorf("read %d bytes of %d", n, len(body))
			}
			return err
		}
	}
	if err := get(e.sluice + path)(); err != nil {
		b.Fatal(err)
	}
	if !strings.HasPrefix(e.img.Target.MediaType, "application/vnd.oci.image.manifest") {
		b.Fatalf("target is %s, want an image manifest", e.img.Target.MediaType)
	}
	b.Run("server=baseline", func(b *testing.B) {
		for b.Loop() {
			if err := get(static + path)(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("server=sluice", func(b *testing.B) {
		compare(b, get(static+path), get(e.sluice+path))
	})
}
