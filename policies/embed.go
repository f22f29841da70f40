// Package policies holds the Rego policies shipped with sluice (mirrors,
// latest, digest_only and the three action packages), their tests, the
// JSON Schema of the policy input and the shared decision case table.
//
// The node uses FS when no --policy is given; `opa test policies/` runs
// the *_test.rego files.
package policies

import (
	"embed"
	"io/fs"
)

//go:embed *.rego
var files embed.FS

//go:embed schema/input.schema.json
var inputSchema []byte

// FS returns the shipped Rego files (tests included: loaders skip files
// named *_test.rego) rooted at the policies directory.
func FS() fs.FS { return files }

// InputSchema returns the JSON Schema (draft-07) of the policy input.
func InputSchema() []byte { return append([]byte(nil), inputSchema...) }
