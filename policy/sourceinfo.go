package policy

import "slices"

// SourceInfo describes one source of the revision now serving.
type SourceInfo struct {
	// Name is "rego" for the Rego set (every .rego and data file of every
	// path), else the .wasm module's path.
	Name string `json:"name"`
	// Revision and LastError are set for the external source (WithExternal):
	// what it has loaded, and why the last update was refused.
	Revision  string `json:"revision,omitempty"`
	LastError string `json:"last_error,omitempty"`
}

// Sources lists the sources of the revision now serving, in decision
// order.
func (s *Set) Sources() []SourceInfo {
	rev := s.rev.Load()
	out := make([]SourceInfo, 0, len(rev.sources))
	for _, src := range rev.sources {
		si := SourceInfo{Name: src.name}
		s.ext.info(&si)
		out = append(out, si)
	}
	return out
}

// Paths returns the --policy paths the set was loaded from; empty means
// the shipped policies.
func (s *Set) Paths() []string { return slices.Clone(s.paths) }
