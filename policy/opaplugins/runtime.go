// Package opaplugins runs OPA's own plugin manager for sluice: bundles
// from a bundle service or an OCI registry (polling, long polling, ETag,
// signing keys), decision logs in OPA's event format with OPA's buffering
// and masking, and status reports, all configured with OPA's
// configuration file (--policy-config). Downloaded bundles become the
// external source of a policy.Set (policy.WithExternal): compiled by OPA
// on activation, then by sluice before they replace the running source.
package opaplugins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/plugins"
	"github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/discovery"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
	"github.com/open-policy-agent/opa/v1/util"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluice-oci/sluice/policy"
)

// SourceName is the name of the downloaded bundles as a policy source.
const SourceName = "bundles"

// DefaultLogBufferBytes bounds the decision-log buffer when the
// configuration does not (OPA's own default is no bound): past it OPA
// drops the oldest decisions and counts them, rather than a sink that
// hangs or fails growing the node's memory.
const DefaultLogBufferBytes = 32 << 20

// Option configures New.
type Option func(*Runtime)

// WithLogger sets the logger for OPA's plugins and for bundle loads.
func WithLogger(l *slog.Logger) Option { return func(r *Runtime) { r.log = l } }

// WithRegisterer registers the bundle and decision-log metrics with reg.
func WithRegisterer(reg prometheus.Registerer) Option { return func(r *Runtime) { r.reg = reg } }

// WithID sets the instance id OPA puts into status reports and decision
// log labels (default "sluice"): the node name is a good choice.
func WithID(id string) Option { return func(r *Runtime) { r.id = id } }

// WithLogQueue bounds the decisions waiting for the decision-log plugin
// (default 4096); past it decisions are dropped from the log and counted.
func WithLogQueue(n int) Option { return func(r *Runtime) { r.queue = n } }

// Runtime is OPA's plugin manager with the bundle, decision-log and
// status plugins that the configuration enables.
type Runtime struct {
	log   *slog.Logger
	reg   prometheus.Registerer
	id    string
	queue int

	mgr    *plugins.Manager
	bundle *bundle.Plugin // nil: no bundles configured
	logs   *logs.Plugin   // nil: no decision logs configured
	m      *promMetrics

	set *policy.Set
	st  bundleState // under the bundle plugin's lock (its listener)

	events  chan event
	done    chan struct{}
	evMu    sync.RWMutex // closed, against sends on a closed events
	closed  bool
	started bool
	stop    sync.Once
}

// New parses config (OPA's configuration file: services, bundles, keys,
// decision_logs, status, labels; YAML or JSON) and prepares OPA's
// plugins. Nothing is downloaded before Start. Discovery is refused:
// sluice's policy must be reviewable from the node's configuration.
func New(ctx context.Context, config []byte, opts ...Option) (*Runtime, error) {
	r := &Runtime{id: "sluice", queue: 4096}
	for _, o := range opts {
		o(r)
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(r.reg)
	if err != nil {
		return nil, fmt.Errorf("policy config metrics: %w", err)
	}
	r.m = m
	if len(bytes.TrimSpace(config)) == 0 {
		return nil, errors.New("policy config: empty configuration")
	}
	var boot map[string]any
	if err := util.Unmarshal(config, &boot); err != nil {
		return nil, fmt.Errorf("policy config: %w", err)
	}
	if boundLogBuffer(boot) {
		if config, err = json.Marshal(boot); err != nil {
			return nil, fmt.Errorf("policy config: %w", err)
		}
	}
	lg := newOPALogger(r.log)
	mgr, err := plugins.New(config, r.id, inmem.New(),
		plugins.Logger(lg), plugins.ConsoleLogger(newOPALogger(r.log.With("source", "decision_log"))),
		plugins.WithParserOptions(ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}),
		plugins.EnablePrintStatements(false))
	if err != nil {
		return nil, fmt.Errorf("policy config: %w", err)
	}
	if mgr.Config.Discovery != nil {
		return nil, errors.New("policy config: discovery is not supported: configure bundles, decision_logs and status directly")
	}
	// OPA's runtime and SDK build their plugins this way: the discovery
	// plugin without a discovery service instantiates the plugins the
	// configuration enables.
	d, err := discovery.New(mgr, discovery.BootConfig(boot))
	if err != nil {
		return nil, fmt.Errorf("policy config: %w", err)
	}
	mgr.Register(discovery.Name, d)
	r.mgr = mgr
	r.bundle = bundle.Lookup(mgr)
	r.logs = logs.Lookup(mgr)
	if r.bundle == nil && r.logs == nil {
		return nil, errors.New("policy config: configures neither bundles nor decision_logs")
	}
	if r.logs != nil {
		r.events = make(chan event, r.queue)
		r.done = make(chan struct{})
	}
	_ = ctx
	return r, nil
}

// boundLogBuffer sets decision_logs.reporting.buffer_size_limit_bytes to
// DefaultLogBufferBytes in the configuration cfg when decision logs use
// OPA's size buffer with no bound of bytes or rate; it reports whether it
// changed cfg. An event buffer has OPA's bound of 10000 events already.
func boundLogBuffer(cfg map[string]any) bool {
	dl, ok := cfg["decision_logs"].(map[string]any)
	if !ok {
		return false
	}
	rep, ok := dl["reporting"].(map[string]any)
	if !ok {
		if dl["reporting"] != nil {
			return false // OPA reports the malformed section
		}
		rep = map[string]any{}
	}
	if bt, _ := rep["buffer_type"].(string); bt != "" && bt != "size" {
		return false
	}
	if rep["buffer_size_limit_bytes"] != nil || rep["max_decisions_per_second"] != nil {
		return false
	}
	rep["buffer_size_limit_bytes"] = DefaultLogBufferBytes
	dl["reporting"] = rep
	return true
}

// Options are the policy.Load options this configuration needs: the
// external source when bundles are configured, the decision logger when
// decision logs are.
func (r *Runtime) Options() []policy.Option {
	var out []policy.Option
	if r.bundle != nil {
		out = append(out, policy.WithExternal(SourceName))
	}
	if r.logs != nil {
		out = append(out, policy.WithDecisionLogger(r))
	}
	return out
}

// Start hands downloaded bundles to set (loaded with Options) and starts
// the plugins: downloads, decision-log uploads and status reports run
// until Stop.
func (r *Runtime) Start(ctx context.Context, set *policy.Set) error {
	r.set = set
	if r.bundle != nil {
		r.bundle.RegisterBulkListener("sluice", func(st map[string]*bundle.Status) { r.onBundles(ctx, st) })
	}
	if r.logs != nil {
		r.started = true
		go r.logLoop(context.WithoutCancel(ctx))
	}
	if err := r.mgr.Start(ctx); err != nil {
		return fmt.Errorf("policy config: start OPA plugins: %w", err)
	}
	return nil
}

// Stop stops the plugins; the decision-log plugin flushes what it
// buffered, within ctx.
func (r *Runtime) Stop(ctx context.Context) {
	r.stop.Do(func() {
		if r.events != nil {
			r.evMu.Lock()
			r.closed = true
			close(r.events)
			r.evMu.Unlock()
			if r.started {
				<-r.done
			}
		}
		r.mgr.Stop(ctx)
	})
}
