package wasm

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
)

// Defaults for the options below.
const (
	DefaultTimeout          = 50 * time.Millisecond
	DefaultInitTimeout      = 10 * time.Second
	DefaultMemoryLimitPages = 512 // 32 MiB per instance
)

type config struct {
	logger      *slog.Logger
	registerer  prometheus.Registerer
	cache       wazero.CompilationCache
	timeout     time.Duration
	initTimeout time.Duration
	memPages    uint32
	poolSize    int
	jsonOnly    bool // tests: ignore sluice_decide_compact
	opaCompat   bool // tests: the opa_eval_ctx_* sequence even where opa_eval is exported
}

func defaults() config {
	return config{
		logger:      slog.New(slog.DiscardHandler),
		timeout:     DefaultTimeout,
		initTimeout: DefaultInitTimeout,
		memPages:    DefaultMemoryLimitPages,
		poolSize:    runtime.GOMAXPROCS(0),
	}
}

// Option configures an Engine or an Opener.
type Option func(*config)

// WithLogger sends guest logs (the sluice.log import, stdout, stderr) and
// engine errors to l. By default they are discarded.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) {
		if l != nil {
			c.logger = l
		}
	}
}

// WithRegisterer registers sluice_wasm_errors_total{module,code} with r.
// Engines sharing r share the counter.
func WithRegisterer(r prometheus.Registerer) Option {
	return func(c *config) { c.registerer = r }
}

// WithCompilationCache shares compiled code between engines (and, with
// wazero.NewCompilationCacheWithDir, between processes). Without it each
// Opener keeps an in-memory cache, so a reload of an unchanged module does
// not compile again. The caller closes a cache it passes.
func WithCompilationCache(cc wazero.CompilationCache) Option {
	return func(c *config) { c.cache = cc }
}

// WithTimeout sets the deadline of one call into the guest (default
// 50 ms), on top of the caller's context; a guest still running then is
// killed. Waiting for a free instance is bounded by the same duration.
func WithTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.timeout = d
		}
	}
}

// WithInitTimeout bounds instantiating one instance: _initialize plus
// sluice_configure (default 10 s).
func WithInitTimeout(d time.Duration) Option {
	return func(c *config) {
		if d > 0 {
			c.initTimeout = d
		}
	}
}

// WithMemoryLimitPages caps each instance's memory, in 64 KiB pages
// (default 512 = 32 MiB; at most 65536).
func WithMemoryLimitPages(pages uint32) Option {
	return func(c *config) {
		if pages > 0 {
			c.memPages = min(pages, 65536)
		}
	}
}

// WithPoolSize bounds the instances of one module (default GOMAXPROCS).
// All are created at load; a broken one is replaced on demand.
func WithPoolSize(n int) Option {
	return func(c *config) {
		if n > 0 {
			c.poolSize = n
		}
	}
}
