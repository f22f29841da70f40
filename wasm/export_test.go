package wasm

// WithJSONOnly makes the engine call sluice_decide even when the guest
// exports sluice_decide_compact, so that tests cover both paths.
func WithJSONOnly() Option {
	return func(c *config) { c.jsonOnly = true }
}

// WithOPACompat makes the engine evaluate OPA-compiled modules through
// the opa_eval_ctx_* sequence of ABI 1.0/1.1 even when opa_eval is
// exported, so that tests cover both paths.
func WithOPACompat() Option {
	return func(c *config) { c.opaCompat = true }
}
