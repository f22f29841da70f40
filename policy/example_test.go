package policy_test

import (
	"context"
	"fmt"

	"github.com/sluice-oci/sluice/policy"
)

// The shipped policies, as a node without --policy uses them, on a node
// whose registries.yaml mirrors docker.io only.
func ExampleLoad() {
	ctx := context.Background()
	set, err := policy.Load(ctx, nil) // nil: the shipped mirrors + latest policies
	if err != nil {
		panic(err)
	}
	set.SetMirrors([]string{"docker.io"})

	for _, ref := range []policy.Reference{
		{Registry: "index.docker.io", Repository: "library/nginx", Tag: "1.27"},
		{Registry: "docker.io", Repository: "library/nginx", Tag: "latest"},
		{Registry: "ghcr.io", Repository: "org/app", Digest: "sha256:0a1b"},
	} {
		d, err := set.Decide(ctx, policy.ActionResolve, policy.Input{Reference: &ref})
		if err != nil {
			panic(err)
		}
		fmt.Println(d.Allow, d.Reasons)
	}
	// Output:
	// true []
	// false [latest tag is not shared between nodes: docker.io/library/nginx:latest (set data.sluice.settings.enable_latest to share it)]
	// false [registry "ghcr.io" is not in mirrors]
}
