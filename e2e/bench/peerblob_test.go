package bench

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/core/store/ocidir"
	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/testimage"
)

// BenchmarkNetnsPeerBlob is "a faster peer path" of issue 14: two network
// namespaces joined by a veth pair; in the first, a sluice node (bin/sluice,
// oci-layout store) holds a blob of SLUICE_BENCH_BLOB_MIB MiB (default
// 1024); in the second, a sluice node with an empty store. A client in the
// second namespace GETs the blob from its local sluice (127.0.0.1:5002, as
// containerd would), which finds the first node on the DHT and streams the
// blob from it, verifying its digest. The baseline, in the same run and
// interleaved round by round (order alternating), is a plain file server
// (net/http FileServer: sendfile) in the first namespace serving the same
// file, fetched by the same client over the same veth pair. Both are
// fetched once before the rounds (page cache warm).
//
// Reported per round: time through the peer / time from the file server,
// the receiving node's CPU (utime+stime of its process from
// /proc/<pid>/stat) per GiB, and a second baseline: SHA-256 of the same
// file (page cache, one core, in this process), the bound of a single
// verified stream: through a peer every byte is hashed in order, so the
// peer path cannot pass the hash's own speed however fast the link is.
// Writes out/peer-blob.{txt,md}.
//
// The verification-off A/B needs a switch in core/mirror that
// the binary does not expose as a flag; no such benchmark-only hook is
// reachable from a separate sluice process, so that column is absent.
func BenchmarkNetnsPeerBlob(b *testing.B) {
	p := newNetPair(b)
	mib := envInt(b, "SLUICE_BENCH_BLOB_MIB", 1024)
	rounds := envInt(b, "SLUICE_BENCH_ROUNDS", 10)
	bin := sluiceBin(b)
	dirA, dirB := b.TempDir(), b.TempDir()
	st, err := ocidir.Open(filepath.Join(dirA, "oci"), nil)
	if err != nil {
		b.Fatal(err)
	}
	img, err := testimage.Build(testimage.Spec{Name: "docker.io/library/bench:1.0", LayerSizes: []int64{int64(mib) << 20}, Seed: 14})
	if err != nil {
		b.Fatal(err)
	}
	if err := img.WriteLayout(b.Context(), st); err != nil {
		b.Fatal(err)
	}
	layer, keys := img.Largest(), len(img.Blobs)+1
	blobFile, err := st.BlobPath(layer.Digest)
	if err != nil {
		b.Fatal(err)
	}
	img = nil //nolint:ineffassign,wastedassign // let the GC have the blob's bytes

	sender := startNSNode(b, p, 0, bin, dirA)
	recv := startNSNode(b, p, 1, bin, dirB, "--bootstrap", sender.P2PAddr)
	ctx := b.Context()
	if !cluster.WaitFor(ctx, 60*time.Second, func() bool {
		sa, err1 := sender.status(ctx)
		sb, err2 := recv.status(ctx)
		return err1 == nil && err2 == nil && sa.AdvertisedKeys >= keys && sb.Ready && sb.Peers >= 1
	}) {
		b.Fatal("the nodes did not find each other, or the sender did not advertise its image")
	}

	ln, err := p.listen(0, p.ips[0]+":8080")
	if err != nil {
		b.Fatal(err)
	}
	fs := &http.Server{Handler: http.FileServer(http.Dir(filepath.Dir(blobFile))), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = fs.Serve(ln) }()
	b.Cleanup(func() { _ = fs.Close() })

	f := &fetcher{client: &http.Client{Transport: &http.Transport{DialContext: p.dial(1), DisableCompression: true, MaxIdleConnsPerHost: 4}},
		size: layer.Size, buf: make([]byte, 1<<20)}
	peerURL := "http://127.0.0.1:5002/v2/library/bench/blobs/" + layer.Digest.String() + "?ns=docker.io"
	fileURL := "http://" + p.ips[0] + ":8080/" + layer.Digest.Encoded()
	for _, u := range []string{fileURL, peerURL} { // page cache warm, connections open
		if _, err := f.get(ctx, u, 20); err != nil {
			b.Fatal(err)
		}
	}

	gib := float64(layer.Size) / (1 << 30)
	var ratios, cpuRecv, cpuSend, mbsPeer, mbsFile, mbsHash, ofHash []float64
	var log strings.Builder
	fmt.Fprintf(&log, "# netns peer blob: %d MiB, %d rounds; %s\n# round peer_s file_s ratio recv_cpu_s send_cpu_s sha256_s\n", mib, rounds, machine())
	for r := range rounds {
		var tp, tf time.Duration
		var cr, cs float64
		peer := func() {
			r0, _ := recv.cpuSeconds()
			s0, _ := sender.cpuSeconds()
			if tp, err = f.get(ctx, peerURL, 3); err != nil {
				b.Fatal(err)
			}
			r1, _ := recv.cpuSeconds()
			s1, _ := sender.cpuSeconds()
			cr, cs = r1-r0, s1-s0
		}
		file := func() {
			if tf, err = f.get(ctx, fileURL, 1); err != nil {
				b.Fatal(err)
			}
		}
		if r%2 == 0 {
			peer()
			file()
		} else {
			file()
			peer()
		}
		th, err := hashFile(blobFile)
		if err != nil {
			b.Fatal(err)
		}
		ratios = append(ratios, tp.Seconds()/tf.Seconds())
		mbsHash = append(mbsHash, float64(layer.Size)/1e6/th.Seconds())
		ofHash = append(ofHash, th.Seconds()/tp.Seconds())
		cpuRecv = append(cpuRecv, cr/gib)
		cpuSend = append(cpuSend, cs/gib)
		mbsPeer = append(mbsPeer, float64(layer.Size)/1e6/tp.Seconds())
		mbsFile = append(mbsFile, float64(layer.Size)/1e6/tf.Seconds())
		fmt.Fprintf(&log, "%d %.3f %.3f %.3f %.2f %.2f %.3f\n", r, tp.Seconds(), tf.Seconds(), ratios[r], cr, cs, th.Seconds())
	}
	ratio, recvCPU := summarize(ratios), summarize(cpuRecv)
	b.ReportMetric(ratio.Med, "time-ratio")
	b.ReportMetric(recvCPU.Med, "recv-cpu-s/GiB")
	b.ReportMetric(summarize(mbsPeer).Med, "peer-MB/s")
	b.ReportMetric(summarize(mbsFile).Med, "file-MB/s")
	b.ReportMetric(summarize(ofHash).Med, "peer/sha256-speed")

	fmt.Fprintf(&log, "time ratio peer/file server: %s\nreceiver CPU-s/GiB: %s\nsender CPU-s/GiB: %s\npeer MB/s: %s\nfile server MB/s: %s\nSHA-256 MB/s (one core): %s\npeer speed ÷ SHA-256 speed: %s\n",
		ratio.format(3), recvCPU.format(2), summarize(cpuSend).format(2), summarize(mbsPeer).format(0), summarize(mbsFile).format(0),
		summarize(mbsHash).format(0), summarize(ofHash).format(2))
	writeOut(b, "peer-blob.txt", log.String())
	writeOut(b, "peer-blob.md", fmt.Sprintf(`| blob | rounds | time through a peer ÷ file server | file server MB/s | through a peer MB/s | SHA-256 MB/s (one core) | peer ÷ SHA-256 speed | receiving node CPU-s/GiB | serving node CPU-s/GiB |
|---|---|---|---|---|---|---|---|---|
| %d MiB | %d | %s | %s | %s | %s | %s | %s | %s |
`, mib, rounds, ratio.format(2), summarize(mbsFile).format(0), summarize(mbsPeer).format(0), summarize(mbsHash).format(0),
		summarize(ofHash).format(2), recvCPU.format(2), summarize(cpuSend).format(2)))
}

// fetcher GETs a blob and reads it to the end, as curl -o /dev/null would.
type fetcher struct {
	client *http.Client
	size   int64
	buf    []byte
}

// get fetches u, retrying up to tries times on a non-200 answer (the
// first lookups on a fresh DHT may miss), and returns the time of the
// successful fetch.
func (f *fetcher) get(ctx context.Context, u string, tries int) (time.Duration, error) {
	var err error
	for range tries {
		var d time.Duration
		if d, err = f.once(ctx, u); err == nil {
			return d, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return 0, err
}

func (f *fetcher) once(ctx context.Context, u string) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := f.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return 0, fmt.Errorf("GET %s: %s %s", u, resp.Status, body)
	}
	var n int64
	for {
		m, err := resp.Body.Read(f.buf)
		n += int64(m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("GET %s: %w after %d bytes", u, err, n)
		}
	}
	if n != f.size {
		return 0, fmt.Errorf("GET %s: %d bytes of %d", u, n, f.size)
	}
	return time.Since(start), nil
}

// hashFile times SHA-256 over the file at path (page cache), one core.
func hashFile(path string) (time.Duration, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	start := time.Now()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		return 0, fmt.Errorf("hash %s: %w", path, err)
	}
	return time.Since(start), nil
}
