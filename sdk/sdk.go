// Package sdk is the guest side of sluice Wasm policies: write a policy in
// plain Go, build it with the standard toolchain, and sluice runs it.
//
//	package main
//
//	import "github.com/sluice-oci/sluice/sdk"
//
//	var _ = sdk.Handle(func(in sdk.Input) sdk.Decision {
//		if in.Reference != nil && in.Reference.Registry == "quay.io" {
//			return sdk.Deny("quay.io is not shared")
//		}
//		return sdk.Allow()
//	})
//
//	func main() {}
//
// Build:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o policy.wasm .
//
// The SDK implements the exports of ABI v1 (wasm/ABI.md): it keeps the
// buffers it hands to the host reachable, decodes the input document,
// calls the registered function and encodes its decision. Register with a
// package-level variable as above: a -buildmode=c-shared module runs
// package initialization in _initialize but never calls main.
//
// The package imports only the standard library and compiles for the host
// too, so policies can be unit-tested with go test.
package sdk

// ABIVersion is the sluice Wasm ABI this SDK implements.
const ABIVersion = 1

// Actions, as in the input document.
const (
	ActionAdvertise = "advertise"
	ActionServe     = "serve"
	ActionResolve   = "resolve"
	ActionFetch     = "fetch"
)

// Reference kinds.
const (
	KindManifest = "manifest"
	KindBlob     = "blob"
)

// Input is the document a policy decides on: the same JSON as the Rego
// input (DESIGN.md), field for field, plus the data document the module
// was loaded with. Fields that do not apply to an action are nil or empty.
type Input struct {
	Action    string     `json:"action"`
	Reference *Reference `json:"reference,omitempty"`
	MediaType string     `json:"media_type,omitempty"`
	Size      int64      `json:"size,omitempty"`
	Peer      *Peer      `json:"peer,omitempty"`
	Node      *Node      `json:"node,omitempty"`
	Source    *Source    `json:"source,omitempty"`
	// Upstream is where the responsible node would fetch from (fetch only).
	Upstream *Upstream `json:"upstream,omitempty"`
	// Mirrors is the list of registries enabled in registries.yaml, or
	// ["*"] when every registry is shared.
	Mirrors []string `json:"mirrors"`

	// Data is the data document (data.* in Rego terms), the same for every
	// decision of an instance. Nil when the host sent none.
	Data map[string]any `json:"-"`
	// Settings are the shipped switches, read from Data.
	Settings Settings `json:"-"`
}

// Reference names the content a decision is about.
type Reference struct {
	Registry   string `json:"registry,omitempty"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Kind is KindManifest or KindBlob.
	Kind string `json:"kind,omitempty"`
}

// Peer is the other node of a request crossing a node boundary.
type Peer struct {
	ID         string `json:"id,omitempty"`
	Address    string `json:"address,omitempty"`
	TLSSubject string `json:"tls_subject,omitempty"`
}

// Node is the node making the decision.
type Node struct {
	Name   string            `json:"name,omitempty"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Source is what the serving node knows of the content: the local image
// a tag names, and the registries and repositories ("registry/repository")
// the content was pulled or imported under.
type Source struct {
	Image        string            `json:"image,omitempty"`
	Pinned       bool              `json:"pinned"`
	Labels       map[string]string `json:"labels,omitempty"`
	Registries   []string          `json:"registries,omitempty"`
	Repositories []string          `json:"repositories,omitempty"`
}

// Upstream is the upstream of a fetch decision: the first endpoint
// registries.yaml gives for the registry, and whether credentials would be
// sent.
type Upstream struct {
	Endpoint    string `json:"endpoint,omitempty"`
	Credentials bool   `json:"credentials"`
}

// Settings are data.sluice.settings, the switches of the shipped policies.
type Settings struct {
	// EnableLatest allows resolving and advertising :latest.
	EnableLatest bool `json:"enable_latest"`
	// DigestOnly refuses tag references: tags always go upstream.
	DigestOnly bool `json:"digest_only"`
	// CoalesceCredentialed lets a node fetch content of a registry that
	// needs credentials on behalf of peers (fetch).
	CoalesceCredentialed bool `json:"coalesce_credentialed"`
}

// Lookup walks Data along path, as data.a.b.c in Rego.
func (in Input) Lookup(path ...string) (any, bool) {
	var v any = in.Data
	for _, k := range path {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		if v, ok = m[k]; !ok {
			return nil, false
		}
	}
	return v, true
}

// Decision is a policy's answer: {"allow": bool, "reasons": [string]}.
type Decision struct {
	Allow   bool     `json:"allow"`
	Reasons []string `json:"reasons,omitempty"`
}

// Allow returns an allowing decision.
func Allow() Decision { return Decision{Allow: true} }

// Deny returns a denying decision with reasons.
func Deny(reasons ...string) Decision { return Decision{Reasons: reasons} }

// All combines decisions as sluice combines policy sources: it allows
// only when every decision allows, and concatenates the reasons.
func All(ds ...Decision) Decision {
	out := Decision{Allow: true}
	for _, d := range ds {
		out.Allow = out.Allow && d.Allow
		out.Reasons = append(out.Reasons, d.Reasons...)
	}
	return out
}

// Func is a policy: it decides one action on one input. It runs on one
// goroutine at a time per instance.
type Func func(in Input) Decision

// Handle registers fn as the module's policy and returns true, so that it
// can be called from a package-level declaration:
//
//	var _ = sdk.Handle(decide)
//
// A later call replaces the earlier one.
func Handle(fn Func) bool {
	current.handler = fn
	return true
}
