package policy

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Engine labels of the metrics. A source that implements EngineNamer
// chooses its own (the Wasm engine says "wasm").
const (
	EngineRego = "rego"
	EngineWasm = "wasm"
)

// EngineNamer is implemented by engines that label their metrics.
type EngineNamer interface {
	EngineName() string
}

// results of one source's evaluation, an index into the counters.
const (
	resultAllow = iota
	resultDeny
	resultError
	numResults
)

var resultNames = [numResults]string{"allow", "deny", "error"}

type metrics struct {
	decisions *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	errors    *prometheus.CounterVec
	reloads   *prometheus.CounterVec
	cache     *prometheus.CounterVec
	cacheHit  prometheus.Counter
	cacheMiss prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_decisions_total",
			Help: "Policy decisions by action, engine and result (allow, deny, error).",
		}, []string{"action", "engine", "result"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "sluice_policy_eval_duration_seconds",
			Help:    "Time to evaluate one policy source (cache misses only).",
			Buckets: []float64{1e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 1e-3, 5e-3, 2e-2},
		}, []string{"engine"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_errors_total",
			Help: "Policy engine errors (bad policy, trap, timeout), each also a deny unless fail-open.",
		}, []string{"engine"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_reloads_total",
			Help: "Policy reloads by result (success, unchanged, error).",
		}, []string{"result"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_policy_cache_total",
			Help: "Policy decision cache lookups by result (hit, miss).",
		}, []string{"result"}),
	}
	if reg != nil {
		var err error
		if m.decisions, err = register(reg, m.decisions); err != nil {
			return nil, err
		}
		if m.duration, err = register(reg, m.duration); err != nil {
			return nil, err
		}
		if m.errors, err = register(reg, m.errors); err != nil {
			return nil, err
		}
		if m.reloads, err = register(reg, m.reloads); err != nil {
			return nil, err
		}
		if m.cache, err = register(reg, m.cache); err != nil {
			return nil, err
		}
	}
	m.cacheHit = m.cache.WithLabelValues("hit")
	m.cacheMiss = m.cache.WithLabelValues("miss")
	return m, nil
}

// register registers c, or returns the collector already registered under
// its name, so several Sets can share one registry.
func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(T); ok {
			return existing, nil
		}
	}
	return c, err
}

// engineMetrics are the label-resolved metrics of one source, so the hot
// path does no label lookups.
type engineMetrics struct {
	decisions [4][numResults]prometheus.Counter // by action index, result
	duration  prometheus.Observer
	errors    prometheus.Counter
}

func (m *metrics) forEngine(engine string) *engineMetrics {
	em := &engineMetrics{
		duration: m.duration.WithLabelValues(engine),
		errors:   m.errors.WithLabelValues(engine),
	}
	for i, a := range Actions {
		for r := range numResults {
			em.decisions[i][r] = m.decisions.WithLabelValues(string(a), engine, resultNames[r])
		}
	}
	return em
}

func actionIndex(a Action) int {
	switch a {
	case ActionAdvertise:
		return 0
	case ActionServe:
		return 1
	case ActionFetch:
		return 3
	}
	return 2
}
