// Package cluster runs real sluice nodes as processes on loopback
// addresses (127.0.0.x, distinct per node) for the demo and the e2e tests:
// start, bootstrap to the first node, read status and metrics, stop or
// kill.
package cluster

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluice-oci/sluice/internal/ctrtest"
)

// Spec describes one node.
type Spec struct {
	Name string
	// IP is the node's loopback address, e.g. 127.0.0.2.
	IP string
	// Ports: registry, p2p, metrics. Zero picks free ones.
	RegistryPort, P2PPort, MetricsPort int
	// Store is the --store URI.
	Store string
	// DataDir is --data-dir.
	DataDir string
	// Args are extra flags.
	Args []string
}

// Node is a running sluice process.
type Node struct {
	Spec
	ID   string
	Addr string // p2p multiaddr with /p2p/ID
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
}

// Status is the node's /status document.
type Status struct {
	PeerID         string   `json:"peer_id"`
	Addrs          []string `json:"addrs"`
	Ready          bool     `json:"ready"`
	Peers          int      `json:"peers"`
	Images         []string `json:"images"`
	AdvertisedKeys int      `json:"advertised_keys"`
	PolicyRevision string   `json:"policy_revision"`
	PolicyError    string   `json:"policy_error"`
}

// FreePort returns a free TCP port on ip.
func FreePort(ip string) (int, error) {
	ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start starts a node and waits until its status page answers.
func Start(ctx context.Context, bin string, spec Spec, bootstrap ...string) (*Node, error) {
	var err error
	for _, p := range []*int{&spec.RegistryPort, &spec.P2PPort, &spec.MetricsPort} {
		if *p == 0 {
			if *p, err = FreePort(spec.IP); err != nil {
				return nil, err
			}
		}
	}
	if err := os.MkdirAll(spec.DataDir, 0o755); err != nil {
		return nil, err
	}
	args := []string{"run",
		"--store", spec.Store,
		"--registry-addr", spec.RegistryAddr(),
		"--p2p-addr", net.JoinHostPort(spec.IP, strconv.Itoa(spec.P2PPort)),
		"--metrics-addr", net.JoinHostPort(spec.IP, strconv.Itoa(spec.MetricsPort)),
		"--data-dir", spec.DataDir,
		"--node-name", spec.Name,
		"--log-level", "debug",
	}
	for _, b := range bootstrap {
		args = append(args, "--bootstrap", b)
	}
	args = append(args, spec.Args...)
	n := &Node{Spec: spec, log: &syncBuffer{}, done: make(chan struct{})}
	n.cmd = exec.Command(bin, args...)
	logFile, err := os.Create(filepath.Join(spec.DataDir, "sluice.log"))
	if err != nil {
		return nil, err
	}
	n.cmd.Stdout = io.MultiWriter(n.log, logFile)
	n.cmd.Stderr = n.cmd.Stdout
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := n.cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("start %s: %w", spec.Name, err)
	}
	go func() { _ = n.cmd.Wait(); logFile.Close(); close(n.done) }()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		st, err := n.Status(ctx)
		if err == nil && st.PeerID != "" {
			n.ID = st.PeerID
			for _, a := range st.Addrs {
				if strings.Contains(a, "/ip4/"+spec.IP+"/") {
					n.Addr = a
				}
			}
			if n.Addr == "" && len(st.Addrs) > 0 {
				n.Addr = st.Addrs[0]
			}
			return n, nil
		}
		select {
		case <-n.done:
			return nil, fmt.Errorf("%s exited at start:\n%s", spec.Name, n.Log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	n.Kill()
	return nil, fmt.Errorf("%s did not come up:\n%s", spec.Name, n.Log())
}

// RegistryAddr is host:port of the registry.
func (s Spec) RegistryAddr() string { return net.JoinHostPort(s.IP, strconv.Itoa(s.RegistryPort)) }

// RegistryURL is the registry's base URL.
func (n *Node) RegistryURL() string { return "http://" + n.RegistryAddr() }

// MetricsURL is the metrics server's base URL.
func (n *Node) MetricsURL() string {
	return "http://" + net.JoinHostPort(n.IP, strconv.Itoa(n.MetricsPort))
}

// Status reads /status.
func (n *Node) Status(ctx context.Context) (Status, error) {
	var st Status
	b, err := n.get(ctx, "/status")
	if err != nil {
		return st, err
	}
	err = json.Unmarshal(b, &st)
	return st, err
}

func (n *Node) get(ctx context.Context, path string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.MetricsURL()+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, fmt.Errorf("%s: status %d", path, resp.StatusCode)
	}
	return io.ReadAll(resp.Body)
}

// Metric sums the samples of a metric whose labels include every given
// label (name="value" pairs, e.g. `to="peer"`).
func (n *Node) Metric(ctx context.Context, name string, labels ...string) (float64, error) {
	b, err := n.get(ctx, "/metrics")
	if err != nil {
		return 0, err
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) || strings.HasPrefix(line, "#") {
			continue
		}
		rest := line[len(name):]
		if rest == "" || (rest[0] != '{' && rest[0] != ' ') {
			continue
		}
		ok := true
		for _, l := range labels {
			if !strings.Contains(rest, l) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(rest[strings.LastIndex(rest, "}")+1:])
		if len(f) == 0 {
			continue
		}
		v, err := strconv.ParseFloat(f[0], 64)
		if err == nil {
			sum += v
		}
	}
	return sum, nil
}

// WaitFor polls cond until it holds or the timeout passes.
func WaitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-time.After(50 * time.Millisecond):
		}
	}
	return cond()
}

// Stop stops the node gracefully.
func (n *Node) Stop() {
	if n.cmd.Process == nil {
		return
	}
	_ = n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.done:
	case <-time.After(10 * time.Second):
		n.Kill()
	}
}

// Kill kills the node at once.
func (n *Node) Kill() {
	if n.cmd.Process != nil {
		_ = n.cmd.Process.Kill()
	}
	<-n.done
}

// Log returns what the node printed.
func (n *Node) Log() string { return n.log.String() }

// Exited reports whether the process ended.
func (n *Node) Exited() bool {
	select {
	case <-n.done:
		return true
	default:
		return false
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 8<<20 {
		return len(p), nil
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// BuildSluice builds the sluice binary into <repo>/bin/sluice, the way
// `make build` and the image do (static, trimmed paths, no symbol table),
// and returns its path (serialised across test binaries by a file lock).
func BuildSluice() (string, error) {
	bin, err := ctrtest.RepoBin()
	if err != nil {
		return "", err
	}
	out := filepath.Join(bin, "sluice")
	err = ctrtest.Locked(bin, "sluice", func() error {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, "./cmd/sluice")
		cmd.Dir = filepath.Dir(bin)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("build sluice: %w\n%s", err, b)
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	return out, nil
}

// MemoryBreakdown is the Rss*, VmHWM and Threads lines of the node's
// /proc status, for a test log that says where resident memory went.
func (n *Node) MemoryBreakdown() string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return err.Error()
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Rss") || strings.HasPrefix(line, "VmHWM") || strings.HasPrefix(line, "Threads") {
			out = append(out, strings.Join(strings.Fields(line), " "))
		}
	}
	return strings.Join(out, "; ")
}

// RSS returns the node's resident set size in bytes, from /proc.
func (n *Node) RSS() (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.cmd.Process.Pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if len(f) >= 1 {
				kb, err := strconv.ParseInt(f[0], 10, 64)
				return kb << 10, err
			}
		}
	}
	return 0, errors.New("no VmRSS in /proc status")
}
