// Command digest_only is the shipped policy digest_only.rego: with data.sluice.settings.digest_only, only digest references are shared, as a Wasm module.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o digest_only.wasm ./sdk/examples/digest_only
package main

import (
	"github.com/sluice-oci/sluice/sdk"
	"github.com/sluice-oci/sluice/sdk/examples/internal/shipped"
)

var _ = sdk.Handle(shipped.Policy(shipped.DigestOnly))

func main() {}
