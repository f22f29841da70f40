package policy

// Input is the document every policy sees, the same JSON for Rego and Wasm.
// Fields that do not apply to an action are absent. Add fields, never rename.
type Input struct {
	Action    Action     `json:"action"`
	Reference *Reference `json:"reference,omitempty"`
	MediaType string     `json:"media_type,omitempty"`
	Size      int64      `json:"size,omitempty"`
	Peer      *Peer      `json:"peer,omitempty"`
	Node      *Node      `json:"node,omitempty"`
	Source    *Source    `json:"source,omitempty"`
	// Upstream is where the responsible node would fetch from, for the
	// fetch action only.
	Upstream *Upstream `json:"upstream,omitempty"`
	// Mirrors is the list of registries enabled in registries.yaml, or
	// ["*"] when the wildcard is present or no registries.yaml is given.
	Mirrors []string `json:"mirrors"`
}

// Reference names the content a decision is about.
type Reference struct {
	Registry   string `json:"registry,omitempty"`
	Repository string `json:"repository,omitempty"`
	Tag        string `json:"tag,omitempty"`
	Digest     string `json:"digest,omitempty"`
	// Kind is "manifest" or "blob".
	Kind string `json:"kind,omitempty"`
}

// Reference kinds.
const (
	KindManifest = "manifest"
	KindBlob     = "blob"
)

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
// the content was pulled or imported under. A serve decision is judged on
// these, not only on what the requester wrote.
type Source struct {
	Image        string            `json:"image,omitempty"`
	Pinned       bool              `json:"pinned"`
	Labels       map[string]string `json:"labels,omitempty"`
	Registries   []string          `json:"registries,omitempty"`
	Repositories []string          `json:"repositories,omitempty"`
}

// Upstream is the upstream a fetch decision is about: the first endpoint
// registries.yaml gives for the registry, and whether credentials
// (configs.<host>.auth) would be sent.
type Upstream struct {
	Endpoint    string `json:"endpoint,omitempty"`
	Credentials bool   `json:"credentials"`
}
