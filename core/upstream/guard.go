package upstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"time"

	"github.com/sluice-oci/sluice/core/config"
)

// ErrForbiddenAddress is returned (wrapped) when a fetch would connect to
// a loopback, link-local or unspecified address of a host registries.yaml
// does not name.
var ErrForbiddenAddress = errors.New("upstream address refused: loopback or link-local host not named in registries.yaml")

// guard decides which addresses the client may connect to. Registry names
// reach the client from peers (?ns=), and redirects from registries: a
// host the operator did not write in registries.yaml (a `mirrors` key, an
// endpoint, a `configs` key) is refused when it resolves to a loopback,
// link-local (169.254.169.254, fe80::) or unspecified address, so a peer
// cannot point the node at its own admin ports or at a cloud metadata
// service. The check runs on the address actually dialled, after DNS.
type guard struct {
	named  map[string]bool // lower-case host names and IPs, without port
	dialer *net.Dialer     // containerd's DefaultHTTPTransport dialer settings
}

func newGuard(reg *config.Registries) guard {
	g := guard{named: map[string]bool{}, dialer: &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second, FallbackDelay: 300 * time.Millisecond}}
	add := func(hostport string) {
		if hostport == "" || hostport == config.Wildcard {
			return
		}
		raw := hostport
		if !strings.Contains(raw, "://") {
			raw = "//" + raw
		}
		if u, err := url.Parse(raw); err == nil && u.Hostname() != "" {
			g.named[strings.ToLower(u.Hostname())] = true
		}
	}
	if reg == nil {
		return g
	}
	for r, m := range reg.Mirrored {
		add(r)
		if u := config.UpstreamURL(r); u != "" {
			add(u)
		}
		for _, e := range m.Endpoints {
			add(e)
		}
	}
	for h := range reg.Configs {
		add(h)
	}
	return g
}

// dial is the transports' DialContext.
func (g guard) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if g.named[strings.ToLower(strings.Trim(host, "[]"))] {
		return g.dialer.DialContext(ctx, network, addr)
	}
	d := *g.dialer
	d.Control = func(_, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("%s: %w", address, ErrForbiddenAddress)
		}
		ip := ap.Addr().Unmap()
		if ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsLinkLocalMulticast() || ip.IsUnspecified() || ip.IsInterfaceLocalMulticast() {
			return fmt.Errorf("%s (%s): %w", addr, ip, ErrForbiddenAddress)
		}
		return nil
	}
	return d.DialContext(ctx, network, addr)
}
