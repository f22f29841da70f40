package sdk_test

import (
	"fmt"
	"slices"

	"github.com/sluice-oci/sluice/sdk"
)

// A policy is a plain function; register it from a package-level
// declaration of the main package (`var _ = sdk.Handle(decide)`), and
// test it on the host like any Go function.
func ExampleHandle() {
	decide := func(in sdk.Input) sdk.Decision {
		if in.Reference == nil || !slices.Contains(in.Mirrors, in.Reference.Registry) {
			return sdk.Deny("registry not mirrored")
		}
		return sdk.Allow()
	}
	sdk.Handle(decide)

	in := sdk.Input{
		Action:    sdk.ActionResolve,
		Reference: &sdk.Reference{Registry: "quay.io", Repository: "coreos/etcd", Tag: "v3.5"},
		Mirrors:   []string{"docker.io"},
	}
	fmt.Printf("%+v\n", decide(in))
	// Output: {Allow:false Reasons:[registry not mirrored]}
}

// All combines decisions the way sluice combines policy sources.
func ExampleAll() {
	d := sdk.All(sdk.Allow(), sdk.Deny("tag refused"), sdk.Deny("registry not mirrored"))
	fmt.Println(string(d.AppendJSON(nil)))
	// Output: {"allow":false,"reasons":["tag refused","registry not mirrored"]}
}

// ParseInput decodes the document the host sends, e.g. a fixture in a
// policy's unit test.
func ExampleParseInput() {
	in, err := sdk.ParseInput([]byte(`{"action":"serve","peer":{"tls_subject":"CN=node-7"},"mirrors":["*"]}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(in.Action, in.Peer.TLSSubject, in.Mirrors)
	// Output: serve CN=node-7 [*]
}

// Lookup reads the data document the module was loaded with.
func ExampleInput_Lookup() {
	in := sdk.Input{Data: map[string]any{"sluice": map[string]any{"peer_cn": map[string]any{"patterns": []any{"node-*"}}}}}
	v, ok := in.Lookup("sluice", "peer_cn", "patterns")
	fmt.Println(v, ok)
	// Output: [node-*] true
}
