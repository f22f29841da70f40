package registry

import "sync"

// maxRegistryLabels bounds the registry label of the request metrics. The
// registry is what the client wrote in ?ns=, so without a bound every
// distinct value would be a new series on the node and in Prometheus.
const maxRegistryLabels = 32

// otherRegistry is the label of every registry past the bound, and of
// registries only ever seen in failed requests.
const otherRegistry = "other"

// registryLabels admits a registry name as a metric label only once a
// request for it succeeded, and at most maxRegistryLabels of them: an
// attacker's made-up names stay "other".
type registryLabels struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

func (l *registryLabels) label(registry string, ok bool) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, hit := l.seen[registry]; hit {
		return registry
	}
	if !ok || len(l.seen) >= maxRegistryLabels {
		return otherRegistry
	}
	if l.seen == nil {
		l.seen = map[string]struct{}{}
	}
	l.seen[registry] = struct{}{}
	return registry
}
