package mirror_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"
)

// cpuMeter adds up the process's CPU time (user+sys) over measured calls
// and the bytes they delivered.
type cpuMeter struct {
	cpu   time.Duration
	bytes int64
}

// processCPU is the CPU time this process has used so far, every thread.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func (c *cpuMeter) measure(size int64, f func() error) error {
	start := processCPU()
	err := f()
	c.cpu += processCPU() - start
	c.bytes += size
	return err
}

// perGiB is CPU seconds per GiB delivered.
func (c *cpuMeter) perGiB() float64 {
	if c.bytes == 0 {
		return 0
	}
	return c.cpu.Seconds() / (float64(c.bytes) / (1 << 30))
}

// reportCPU reports the CPU of fetches through a node, of the interleaved
// local fetches, and their difference: the node's own share.
func reportCPU(b *testing.B, through, local *cpuMeter) {
	b.ReportMetric(through.perGiB(), "cpu-s/GiB")
	b.ReportMetric(local.perGiB(), "local-cpu-s/GiB")
	b.ReportMetric(through.perGiB()-local.perGiB(), "mirror-cpu-s/GiB")
}

// benchSHA256 hashes blob as verification must: the floor of a verifying
// mirror's CPU beyond copying.
func benchSHA256(b *testing.B, blob []byte) {
	var cpu cpuMeter
	for b.Loop() {
		_ = cpu.measure(int64(len(blob)), func() error {
			h := sha256.New()
			h.Write(blob)
			if len(h.Sum(nil)) != sha256.Size {
				return fmt.Errorf("short sum")
			}
			return nil
		})
	}
	b.ReportMetric(cpu.perGiB(), "cpu-s/GiB")
	b.ReportMetric(cpu.perGiB(), "mirror-cpu-s/GiB")
}

// blob reads the layer from A into memory.
func (e *peerEnv) blob(b *testing.B) []byte {
	b.Helper()
	resp, err := e.client.Get(e.a + e.path)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	blob, err := io.ReadAll(resp.Body)
	if err != nil || int64(len(blob)) != e.layer.Size {
		b.Fatalf("read blob from A: %d bytes, %v", len(blob), err)
	}
	return blob
}

// serveProxy serves a plain proxy of base: each GET is forwarded and its
// body io.Copy'd to the client, no hashing, which is how Spegel serves a
// blob from a peer. It is the no-verification baseline that does not go
// through sluice's code at all.
func serveProxy(b *testing.B, base string) string {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{Proxy: nil, DisableCompression: true}}
	b.Cleanup(client.CloseIdleConnections)
	return serveOn(b, ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req, err := http.NewRequestWithContext(r.Context(), r.Method, base+r.URL.RequestURI(), nil)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		resp, err := client.Do(req)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for _, k := range []string{"Content-Length", "Content-Type", "Docker-Content-Digest"} {
			w.Header().Set(k, resp.Header.Get(k))
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
}
