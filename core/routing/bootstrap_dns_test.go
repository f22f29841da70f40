package routing

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// TestP2P_DNSBootstrapDialsBoundedSubset: a name with 40 addresses (a
// rolling restart of 40 nodes behind a headless service) costs a bounded
// number of handshakes per bootstrap round, not 40; the subset is random,
// so rounds reach beyond the first few addresses.
func TestP2P_DNSBootstrapDialsBoundedSubset(t *testing.T) {
	t.Parallel()
	const n = 40
	var ips []string
	for i := range n {
		ips = append(ips, fmt.Sprintf("127.0.0.%d", 100+i))
	}
	port := sharedPort(t, ips...)
	var (
		mu     sync.Mutex
		dialed = map[string]int{}
		total  int
	)
	var addrs []netip.Addr
	for _, ip := range ips {
		l, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				dialed[ip]++
				total++
				mu.Unlock()
				c.Close() // not a sluice node: the handshake fails
			}
		}()
		addrs = append(addrs, netip.MustParseAddr(ip))
	}
	// The routing table stays empty, so the node retries at 0, 0.25, 0.75
	// and 1.75 s: four rounds within two seconds.
	newTestNode(t, "127.0.0.1", 5210, P2PConfig{
		Resolver: fakeResolver{"many.test": addrs}, Bootstrap: []string{fmt.Sprintf("dns:many.test:%d", port)},
		CheckInterval: time.Hour,
	})
	time.Sleep(2 * time.Second)
	const maxRounds = 4
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d handshakes in 2 s, %d distinct addresses of %d", total, len(dialed), n)
	if total > maxRounds*dnsBootstrapDials {
		t.Errorf("%d handshakes in %d bootstrap rounds, want at most %d a round", total, maxRounds, dnsBootstrapDials)
	}
	if len(dialed) <= dnsBootstrapDials {
		t.Errorf("rounds dialed only %d distinct addresses: the subset is not random", len(dialed))
	}
}
