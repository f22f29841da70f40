// Command default is the whole shipped Rego set of policies/ (mirrors,
// latest and digest_only, plus fetch's credentials rule, switched by data.sluice.settings) as one Wasm
// module: it decides exactly as `--policy policies/` does.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o default.wasm ./sdk/examples/default
package main

import (
	"github.com/sluice-oci/sluice/sdk"
	"github.com/sluice-oci/sluice/sdk/examples/internal/shipped"
)

var _ = sdk.Handle(shipped.Policy(shipped.Mirrors, shipped.Latest, shipped.DigestOnly, shipped.Credentials))

func main() {}
