package wasm

// WithJSONOnly makes the engine call sluice_decide even when the guest
// exports sluice_decide_compact, so that tests cover both paths.
func WithJSONOnly() Option {
	return func(c *config) { c.jsonOnly = true }
}
