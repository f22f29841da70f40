package containerd

import (
	"net"
	"slices"
	"sync"
)

// portedHosts remembers the registries with a port that the node's image
// names use, by host. containerd's pull labels content with the registry's
// host alone (its remotes take net/url's Hostname, which drops the port):
// content pulled from "registry.local:5000" carries the label
// "containerd.io/distribution.source.registry.local". Read as is, it is
// known under "registry.local", a registry the mirrors never name, and a
// serve policy that wants every source shared refuses it to every peer.
// The host is read as the registries with a port of the node's images on
// that host: all of them when there are several (a policy then judges
// every candidate, so an ambiguous label is never more shared than each
// registry it could stand for).
type portedHosts struct {
	mu    sync.Mutex
	m     map[string][]string // host → registries host:port, sorted
	plain map[string]bool     // hosts also named without a port
}

// maxPortedHosts bounds the map (image names are the node's own, but a
// node may hold many): past it, new hosts are not remembered and their
// labels stay as containerd wrote them (refused by a mirrors policy, as
// before).
const maxPortedHosts = 1024

// note remembers registry when it names a port, and a host named without
// one when a registry with a port on it is known too (the label is then
// ambiguous: both are candidates).
func (p *portedHosts) note(registry string) {
	host, port, err := net.SplitHostPort(registry)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m, p.plain = map[string][]string{}, map[string]bool{}
	}
	if err != nil || port == "" {
		if len(p.plain) < maxPortedHosts {
			p.plain[registry] = true
		}
		return
	}
	regs, ok := p.m[host]
	if slices.Contains(regs, registry) || (!ok && len(p.m) >= maxPortedHosts) {
		return
	}
	regs = append(slices.Clone(regs), registry)
	slices.Sort(regs)
	p.m[host] = regs
}

// expand returns the registries a label's registry stands for: itself
// when it names a port or no image names its host with one.
func (p *portedHosts) expand(registry string) []string {
	if _, _, err := net.SplitHostPort(registry); err == nil {
		return []string{registry}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	regs := p.m[registry]
	if len(regs) == 0 {
		return []string{registry}
	}
	if p.plain[registry] {
		return append(slices.Clone(regs), registry)
	}
	return regs
}
