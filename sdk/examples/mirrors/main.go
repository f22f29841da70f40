// Command mirrors is the shipped policy mirrors.rego: a registry is shared only when it is in input.mirrors (or "*" is), as a Wasm module.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o mirrors.wasm ./sdk/examples/mirrors
package main

import (
	"github.com/sluice-oci/sluice/sdk"
	"github.com/sluice-oci/sluice/sdk/examples/internal/shipped"
)

var _ = sdk.Handle(shipped.Policy(shipped.Mirrors))

func main() {}
