package containerd

import (
	"net"
	"slices"
	"sync"
)

// containerd's pull labels content with the registry's host alone (its
// remotes take net/url's Hostname, which drops the port): content pulled
// from "registry.local:5000" carries the label
// "containerd.io/distribution.source.registry.local". Read as written, it
// is known under "registry.local", which a mirrors list naming
// "registry.local:5000" never names, and the shipped mirrors policy
// refuses it to every peer. Such a label is read as the registries with a
// port on that host of the images that reach the content, and only when
// every image that reaches it on that host names a port (portlessLabel):
// content reached by no image yet (a pull in flight), by a digest-pinned
// name, or also by the bare host stays known under the bare host, so the
// reading never makes content more shared than the label as written.

// portedHosts is the fast check of Stat: the hosts some image of the node
// names with a port other than the scheme's default. Content labelled
// with any other host is read as labelled, without walking images.
type portedHosts struct {
	mu sync.Mutex
	m  map[string]bool
}

// maxPortedHosts bounds the map. Past it a host is not remembered and its
// labels are read as written (refused by a mirrors policy naming the port:
// fails closed).
const maxPortedHosts = 1024

// note remembers the host of registry when registry names a port.
func (p *portedHosts) note(registry string) {
	host, port, err := net.SplitHostPort(registry)
	if err != nil || port == "" || port == "443" || port == "80" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.m == nil {
		p.m = map[string]bool{}
	}
	if len(p.m) < maxPortedHosts {
		p.m[host] = true
	}
}

// has reports whether some image names host with a port.
func (p *portedHosts) has(host string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.m[host]
}

// portlessLabel returns the registries a label's registry stands for,
// given the registries of the images that reach the content: the label
// itself, unless it names no port and every one of those registries on
// its host names one (then those).
func portlessLabel(label string, imageRegistries []string) []string {
	if _, _, err := net.SplitHostPort(label); err == nil {
		return []string{label}
	}
	var onHost []string
	for _, r := range imageRegistries {
		if r == label {
			return []string{label} // also reached by the bare host: as written
		}
		if host, _, err := net.SplitHostPort(r); err == nil && host == label && !slices.Contains(onHost, r) {
			onHost = append(onHost, r)
		}
	}
	if len(onHost) == 0 {
		return []string{label}
	}
	slices.Sort(onHost)
	return onHost
}
