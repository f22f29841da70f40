package policy_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/sluice-oci/sluice/policies"
	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/policy/policytest"
)

// matchSchema validates doc against the input schema with OPA's
// json.match_schema builtin (OPA carries a JSON Schema validator).
func matchSchema(t *testing.T, pq rego.PreparedEvalQuery, doc any) (bool, string) {
	t.Helper()
	rs, err := pq.Eval(t.Context(), rego.EvalInput(doc))
	if err != nil {
		t.Fatal(err)
	}
	res := rs[0].Bindings["r"].([]any)
	return res[0].(bool), strings.TrimSpace(jsonString(res[1]))
}

func jsonString(v any) string { b, _ := json.Marshal(v); return string(b) }

func TestInputSchema_CaseInputs(t *testing.T) {
	t.Parallel()
	var schema any
	if err := json.Unmarshal(policies.InputSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	pq, err := rego.New(rego.Query("r := json.match_schema(input.doc, input.schema)")).PrepareForEval(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	cases, err := policytest.Load(casesGlob)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		bs, err := json.Marshal(c.EngineInput())
		if err != nil {
			t.Fatal(err)
		}
		var doc any
		if err := json.Unmarshal(bs, &doc); err != nil {
			t.Fatal(err)
		}
		if ok, why := matchSchema(t, pq, map[string]any{"doc": doc, "schema": schema}); !ok {
			t.Errorf("case %q: input does not match the schema: %s", c.Name, why)
		}
	}
	// The schema can fail: unknown fields and bad values are rejected.
	for _, bad := range []string{
		`{"action": "pull", "mirrors": []}`,
		`{"action": "serve", "mirrors": [], "referance": {}}`,
		`{"action": "serve", "mirrors": [], "reference": {"kind": "layer"}}`,
		`{"action": "serve", "mirrors": [], "size": -1}`,
		`{"mirrors": []}`,
	} {
		var doc any
		if err := json.Unmarshal([]byte(bad), &doc); err != nil {
			t.Fatal(err)
		}
		if ok, _ := matchSchema(t, pq, map[string]any{"doc": doc, "schema": schema}); ok {
			t.Errorf("schema accepts %s", bad)
		}
	}
}

// TestInputSchema_CoversStruct checks that every JSON field of Input (and
// of its nested structs) is described in the schema, and nothing more.
func TestInputSchema_CoversStruct(t *testing.T) {
	t.Parallel()
	var schema map[string]any
	if err := json.Unmarshal(policies.InputSchema(), &schema); err != nil {
		t.Fatal(err)
	}
	var check func(path string, typ reflect.Type, node map[string]any)
	check = func(path string, typ reflect.Type, node map[string]any) {
		props, _ := node["properties"].(map[string]any)
		if node["additionalProperties"] != false {
			t.Errorf("%s: schema allows additional properties", path)
		}
		fields := map[string]bool{}
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = true
			sub, ok := props[name].(map[string]any)
			if !ok {
				t.Errorf("%s.%s: not in the schema", path, name)
				continue
			}
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				check(path+"."+name, ft, sub)
			}
		}
		for name := range props {
			if !fields[name] {
				t.Errorf("%s.%s: in the schema but not in the Go struct", path, name)
			}
		}
	}
	check("input", reflect.TypeFor[policy.Input](), schema)
}
