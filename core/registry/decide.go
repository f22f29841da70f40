package registry

import (
	"context"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/policy"
)

// decide asks the policy; no engine means the default equal-trust model.
// An engine error is a deny (the facade applies fail-open when configured).
func (c *call) decide(ctx context.Context, a policy.Action, in policy.Input) bool {
	if c.policy == nil {
		return true
	}
	d, err := c.policy.Decide(ctx, a, in)
	c.noteDecision(a, d, err)
	if err != nil {
		c.log.Warn("policy error", "action", a, "ref", c.req.Ref.String(), "err", err)
		return false
	}
	return d.Allow
}

func (c *call) input(a policy.Action, desc ocispec.Descriptor) policy.Input {
	ref := c.req.Ref
	kind := policy.KindBlob
	if c.req.Kind == oci.KindManifest {
		kind = policy.KindManifest
	}
	in := policy.Input{
		Action: a,
		Reference: &policy.Reference{
			Registry: ref.Registry, Repository: ref.Repository, Tag: ref.Tag,
			Digest: ref.Digest.String(), Kind: kind,
		},
		MediaType: desc.MediaType,
		Size:      desc.Size,
	}
	if a == policy.ActionServe {
		in.Peer = c.peer
		// What the local content is, as this node knows it (what the
		// requester wrote is a claim): the image a tag names, or the
		// registries and repositories the store knows a digest under, and
		// its labels, so a serve policy can keep private content home
		// whatever registry or repository a peer names.
		switch {
		case ref.Tag != "":
			in.Source = &policy.Source{Image: ref.String(), Registries: []string{ref.Registry}, Repositories: []string{ref.Name()}}
		case len(c.info.Labels) > 0 || len(c.info.Registries) > 0 || len(c.info.Repositories) > 0:
			in.Source = &policy.Source{Labels: c.info.Labels, Registries: c.info.Registries, Repositories: c.info.Repositories}
		}
	}
	return in
}
