// Package policytest runs the policy case table (policies/testdata/*.yaml)
// against any policy.Engine, so the Rego set and the Wasm engine answer
// the same cases.
//
// A case file looks like:
//
//	cases:
//	  - name: resolve tag on a mirrored registry
//	    action: resolve
//	    data: {sluice: {settings: {enable_latest: true}}}  # optional, merged over the policy data
//	    input: {...}                                       # the policy input
//	    want_allow: true
//	    want_reasons: ["not in mirrors"]                   # optional
//
// Each of want_reasons must be contained in one of the returned reasons.
// The engine sees the case input as written, with action set from the
// case; an absent "mirrors" is an empty list (nothing shared), so every
// engine, wrapped in a policy.Set or not, sees the same document.
package policytest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/sluice-oci/sluice/policy"
)

// Case is one row of the table.
type Case struct {
	Name        string         `json:"name"`
	Action      policy.Action  `json:"action"`
	Data        map[string]any `json:"data,omitempty"`
	Input       policy.Input   `json:"input"`
	WantAllow   *bool          `json:"want_allow"`
	WantReasons []string       `json:"want_reasons,omitempty"`

	// File is the case file the case came from.
	File string `json:"-"`
}

type file struct {
	Cases []Case `json:"cases"`
}

// Load reads case files (glob patterns allowed). Unknown keys, a missing
// name, action or want_allow, and duplicate names are errors.
func Load(files ...string) ([]Case, error) {
	var out []Case
	seen := map[string]string{}
	for _, pattern := range files {
		matches, err := filepath.Glob(pattern)
		if err != nil {
			return nil, fmt.Errorf("case files %q: %w", pattern, err)
		}
		if len(matches) == 0 {
			return nil, fmt.Errorf("case files %q: no such file", pattern)
		}
		for _, name := range matches {
			bs, err := os.ReadFile(name)
			if err != nil {
				return nil, fmt.Errorf("case file: %w", err)
			}
			cases, err := Parse(bs)
			if err != nil {
				return nil, fmt.Errorf("case file %s: %w", name, err)
			}
			for _, c := range cases {
				if prev, ok := seen[c.Name]; ok {
					return nil, fmt.Errorf("case file %s: case %q is also in %s", name, c.Name, prev)
				}
				seen[c.Name] = name
				c.File = name
				out = append(out, c)
			}
		}
	}
	return out, nil
}

// Parse reads the cases of one file's contents.
func Parse(bs []byte) ([]Case, error) {
	var f file
	if err := yaml.UnmarshalStrict(bs, &f); err != nil {
		return nil, err
	}
	for i, c := range f.Cases {
		switch {
		case c.Name == "":
			return nil, fmt.Errorf("case %d: no name", i)
		case !c.Action.Valid():
			return nil, fmt.Errorf("case %q: bad action %q", c.Name, c.Action)
		case c.WantAllow == nil:
			return nil, fmt.Errorf("case %q: no want_allow", c.Name)
		case c.Input.Action != "" && c.Input.Action != c.Action:
			return nil, fmt.Errorf("case %q: input.action %q differs from action %q", c.Name, c.Input.Action, c.Action)
		}
	}
	return f.Cases, nil
}

// EngineInput is the input the engine under test is given for c.
func (c Case) EngineInput() policy.Input {
	in := c.Input
	in.Action = c.Action
	if in.Mirrors == nil {
		in.Mirrors = []string{}
	}
	return in
}

// Check asks e for c and returns an error describing any difference.
func (c Case) Check(ctx context.Context, e policy.Engine) error {
	d, err := e.Decide(ctx, c.Action, c.EngineInput())
	if err != nil {
		return fmt.Errorf("engine error: %w", err)
	}
	var problems []string
	if d.Allow != *c.WantAllow {
		problems = append(problems, fmt.Sprintf("allow = %v, want %v", d.Allow, *c.WantAllow))
	}
	for _, want := range c.WantReasons {
		if !slices.ContainsFunc(d.Reasons, func(r string) bool { return strings.Contains(r, want) }) {
			problems = append(problems, fmt.Sprintf("no reason contains %q", want))
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("%s (reasons: %q)", strings.Join(problems, "; "), d.Reasons)
	}
	return nil
}

// Run runs every case as a subtest. newEngine builds the engine for a
// case's data (nil when the case has none); it may cache engines by data.
func Run(t *testing.T, cases []Case, newEngine func(t *testing.T, data map[string]any) policy.Engine) {
	t.Helper()
	if len(cases) == 0 {
		t.Fatal("policytest: no cases")
	}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			e := newEngine(t, c.Data)
			if err := c.Check(t.Context(), e); err != nil {
				t.Errorf("%s: %s: %v", c.File, c.Name, err)
			}
		})
	}
}
