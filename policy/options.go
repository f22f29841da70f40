package policy

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// WasmOpener opens one .wasm module as a policy source. data is the merged
// data of the Rego/data paths of the same Load (and WithData). An Engine
// it returns may implement io.Closer: it is closed once a reload replaced
// it. It is injected so that package policy does not import package wasm.
type WasmOpener func(ctx context.Context, path string, module []byte, data map[string]any) (Engine, error)

// Option configures Load.
type Option func(*options)

type options struct {
	wasm       WasmOpener
	failOpen   bool
	node       *Node
	registerer prometheus.Registerer
	logger     *slog.Logger
	keyPEM     []byte
	keyFile    string
	data       map[string]any
	cacheSize  int
	debounce   time.Duration

	decisionLog DecisionLogger // nil: no decision log events (decisionlog.go)
	external    string         // non-empty: a source set by SetExternal (external.go)
}

// WithWasm sets the opener of .wasm paths. Without it a .wasm path is a
// load error naming the file.
func WithWasm(open WasmOpener) Option { return func(o *options) { o.wasm = open } }

// WithFailOpen makes an engine error (bad policy, trap, timeout) an allow
// instead of a deny. It is logged and counted either way.
func WithFailOpen(yes bool) Option { return func(o *options) { o.failOpen = yes } }

// WithNode sets the node the Set puts into inputs that carry none.
func WithNode(n Node) Option { return func(o *options) { o.node = &n } }

// WithRegisterer registers the policy metrics with r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.registerer = r } }

// WithLogger sets the logger of the decision log and of reload errors.
// Without it the Set logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithVerificationKey makes every OPA bundle (.tar.gz) need a signature
// that verifies with this public key (PEM: RSA, ECDSA or Ed25519) or, when
// the bytes are not PEM, HMAC secret.
func WithVerificationKey(pem []byte) Option {
	return func(o *options) { o.keyPEM = append([]byte(nil), pem...) }
}

// WithVerificationKeyFile is WithVerificationKey with the key read from
// path at every load, so a rotated key is picked up on reload.
func WithVerificationKeyFile(path string) Option { return func(o *options) { o.keyFile = path } }

// WithData merges data over the data loaded from the paths (its values
// win), e.g. {"sluice": {"settings": {"digest_only": true}}}.
func WithData(data map[string]any) Option { return func(o *options) { o.data = data } }

// WithCacheSize bounds the decision cache (entries; 0 disables it). The
// default is 4096.
func WithCacheSize(n int) Option { return func(o *options) { o.cacheSize = n } }
