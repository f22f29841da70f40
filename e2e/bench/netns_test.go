package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// netPair is two network namespaces joined by a veth pair: 10.213.0.1 in
// the first, 10.213.0.2 in the second, loopback up in both. The addresses
// exist only inside the namespaces; the host's interfaces are untouched.
// Everything is removed when the test ends.
type netPair struct {
	ns  [2]string
	ips [2]string
}

// needRoot skips tb with a clear message unless it runs as root: network
// namespaces and veth pairs need CAP_SYS_ADMIN and CAP_NET_ADMIN.
func needRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("network namespaces need root: run the bench harness as root (sudo make bench)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("the netns scenario needs iproute2's ip command")
	}
}

// newNetPair creates the namespaces and the veth pair.
func newNetPair(tb testing.TB) *netPair {
	tb.Helper()
	needRoot(tb)
	id := os.Getpid()
	p := &netPair{ns: [2]string{fmt.Sprintf("sluice-bench-%d-a", id), fmt.Sprintf("sluice-bench-%d-b", id)},
		ips: [2]string{"10.213.0.1", "10.213.0.2"}}
	va, vb := fmt.Sprintf("slb%da", id), fmt.Sprintf("slb%db", id)
	tb.Cleanup(func() {
		for _, ns := range p.ns { // the veth pair goes with its namespaces
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	steps := [][]string{
		{"netns", "add", p.ns[0]},
		{"netns", "add", p.ns[1]},
		{"link", "add", va, "netns", p.ns[0], "type", "veth", "peer", "name", vb, "netns", p.ns[1]},
		{"-n", p.ns[0], "addr", "add", p.ips[0] + "/24", "dev", va},
		{"-n", p.ns[1], "addr", "add", p.ips[1] + "/24", "dev", vb},
		{"-n", p.ns[0], "link", "set", va, "up"},
		{"-n", p.ns[1], "link", "set", vb, "up"},
		{"-n", p.ns[0], "link", "set", "lo", "up"},
		{"-n", p.ns[1], "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %s: %v\n%s", strings.Join(s, " "), err, out)
		}
	}
	return p
}

// inNS runs fn on an OS thread switched into namespace i. The thread is
// never unlocked, so it ends with the goroutine and no other goroutine
// ever runs in the namespace. Sockets created by fn stay in namespace i.
func (p *netPair) inNS(i int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open("/run/netns/" + p.ns[i])
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", p.ns[i], err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// dial is a DialContext for http.Transport that connects from namespace i.
func (p *netPair) dial(i int) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := p.inNS(i, func() error {
			var d net.Dialer
			var err error
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// listen opens a TCP listener in namespace i.
func (p *netPair) listen(i int, addr string) (net.Listener, error) {
	var ln net.Listener
	err := p.inNS(i, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	return ln, err
}

// command runs name in namespace i (ip netns exec execs it: the process
// keeps the pid cmd.Process.Pid).
func (p *netPair) command(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", p.ns[i], name}, args...)...)
}
