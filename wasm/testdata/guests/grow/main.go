// Command grow is a hostile guest: it allocates without bound when the
// repository is "grow", and allows everything else.
package main

import "github.com/sluice-oci/sluice/sdk"

var hoard [][]byte

var _ = sdk.Handle(func(in sdk.Input) sdk.Decision {
	if in.Reference != nil && in.Reference.Repository == "grow" {
		for {
			b := make([]byte, 1<<20)
			b[0] = 1
			hoard = append(hoard, b)
		}
	}
	return sdk.Allow()
})

func main() {}
