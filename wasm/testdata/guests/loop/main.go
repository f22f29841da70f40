// Command loop is a hostile guest: it loops forever when the repository is
// "loop", and allows everything else.
package main

import "github.com/sluice-oci/sluice/sdk"

var spin int

var _ = sdk.Handle(func(in sdk.Input) sdk.Decision {
	if in.Reference != nil && in.Reference.Repository == "loop" {
		for {
			spin++
		}
	}
	return sdk.Allow()
})

func main() {}
