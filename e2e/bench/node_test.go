package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sluice-oci/sluice/internal/cluster"
	"github.com/sluice-oci/sluice/internal/ctrtest"
)

// nsNode is a sluice process running in one namespace of a netPair,
// listening on that namespace's address: registry :5000, p2p :5001,
// metrics :9090, and the loopback listener for local clients
// 127.0.0.1:5002.
type nsNode struct {
	cmd     *exec.Cmd
	done    chan struct{}
	dir     string
	ip      string
	client  *http.Client // dials from the node's namespace
	ID      string
	P2PAddr string // multiaddr with /p2p/ID
}

// startNSNode starts bin as `sluice run` in namespace i with an oci-layout
// store in dir/oci and waits until its status page answers.
func startNSNode(tb testing.TB, p *netPair, i int, bin, dir string, args ...string) *nsNode {
	tb.Helper()
	ip := p.ips[i]
	full := append([]string{"run",
		"--store", "oci:" + filepath.Join(dir, "oci"),
		"--registry-addr", ip + ":5000",
		"--local-addr", "127.0.0.1:5002",
		"--p2p-addr", ip + ":5001",
		"--metrics-addr", ip + ":9090",
		"--data-dir", dir,
		"--node-name", fmt.Sprintf("bench-%d", i),
		"--log-level", "info",
	}, args...)
	logf, err := os.Create(filepath.Join(dir, "sluice.log"))
	if err != nil {
		tb.Fatal(err)
	}
	n := &nsNode{dir: dir, ip: ip, done: make(chan struct{}),
		client: &http.Client{Transport: &http.Transport{DialContext: p.dial(i), DisableCompression: true, MaxIdleConnsPerHost: 4}}}
	n.cmd = p.command(i, bin, full...)
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Pdeathsig fires when the forking thread exits, and threads do exit
	// here (netPair.inNS ends its locked threads): fork from a thread kept
	// locked until the process ends.
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		err := n.cmd.Start()
		started <- err
		if err == nil {
			_ = n.cmd.Wait()
		}
		logf.Close()
		close(n.done)
	}()
	if err := <-started; err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		n.stop()
		if tb.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "sluice.log"))
			tb.Logf("node %s log:\n%s", ip, tail(string(b), 6000))
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := n.status(tb.(interface{ Context() context.Context }).Context())
		if err == nil && st.PeerID != "" {
			n.ID = st.PeerID
			for _, a := range st.Addrs {
				if strings.Contains(a, "/ip4/"+ip+"/") {
					n.P2PAddr = a
				}
			}
			if n.P2PAddr == "" {
				tb.Fatalf("node %s announces no address on %s: %v", ip, ip, st.Addrs)
			}
			return n
		}
		select {
		case <-n.done:
			b, _ := os.ReadFile(filepath.Join(dir, "sluice.log"))
			tb.Fatalf("node %s exited at start (%v):\n%s", ip, n.cmd.ProcessState, tail(string(b), 4000))
		case <-time.After(50 * time.Millisecond):
		}
	}
	tb.Fatalf("node %s did not come up", ip)
	return nil
}

func (n *nsNode) status(ctx context.Context) (cluster.Status, error) {
	var st cluster.Status
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.ip+":9090/status", nil)
	if err != nil {
		return st, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("status: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal(b, &st)
}

// cpuSeconds is the user+system CPU time the process has used so far.
func (n *nsNode) cpuSeconds() (float64, error) { return procCPU(n.cmd.Process.Pid) }

func (n *nsNode) stop() {
	select {
	case <-n.done:
		return
	default:
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		_ = n.cmd.Process.Kill()
		<-n.done
	}
}

// procCPU reads utime+stime of pid from /proc/<pid>/stat (every thread).
func procCPU(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	s := string(b)
	rp := strings.LastIndexByte(s, ')')
	if rp < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[rp+1:]) // f[0] is field 3 (state): utime is 14, stime 15
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	const clkTck = 100 // USER_HZ: 100 on every Linux architecture Go supports
	return (ut + st) / clkTck, nil
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// sluiceBin is bin/sluice as `make build` left it (make bench builds it
// first), else built now; SLUICE_BENCH_BIN names another binary.
func sluiceBin(tb testing.TB) string {
	tb.Helper()
	if p := os.Getenv("SLUICE_BENCH_BIN"); p != "" {
		return p
	}
	bin, err := ctrtest.RepoBin()
	if err != nil {
		tb.Fatal(err)
	}
	p := filepath.Join(bin, "sluice")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	p, err = cluster.BuildSluice()
	if err != nil {
		tb.Fatal(err)
	}
	return p
}
