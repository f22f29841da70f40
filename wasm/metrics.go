package wasm

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// newErrorCounter returns sluice_wasm_errors_total, registered with r when
// r is not nil; a counter r already holds is reused.
func newErrorCounter(r prometheus.Registerer) (*prometheus.CounterVec, error) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_wasm_errors_total",
		Help: "Wasm policy engine errors (traps, timeouts, memory cap, bad results, load failures), by module and code.",
	}, []string{"module", "code"})
	if r == nil {
		return c, nil
	}
	if err := r.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if !errors.As(err, &are) {
			return nil, err
		}
		existing, ok := are.ExistingCollector.(*prometheus.CounterVec)
		if !ok {
			return nil, err
		}
		return existing, nil
	}
	return c, nil
}
