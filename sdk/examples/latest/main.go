// Command latest is the shipped policy latest.rego: :latest (or untagged) references are neither advertised nor resolved unless data.sluice.settings.enable_latest, as a Wasm module.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o latest.wasm ./sdk/examples/latest
package main

import (
	"github.com/sluice-oci/sluice/sdk"
	"github.com/sluice-oci/sluice/sdk/examples/internal/shipped"
)

var _ = sdk.Handle(shipped.Policy(shipped.Latest))

func main() {}
