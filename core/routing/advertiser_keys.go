package routing

import (
	"context"
	"log/slog"
	"maps"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/policy"
)

// imageKeys returns the keys of img with, for each, whether the policy
// allows advertising it: a digest key for every descriptor reachable from
// the image's target and present locally (store.Walk), and the tag key when
// the image has a tag and its target is present. ok is false when the
// image could not be walked; keys is then nil.
func (a *Advertiser) imageKeys(ctx context.Context, img store.Image) (keys map[string]bool, ok bool) {
	descs, err := store.Walk(ctx, a.store, img.Target)
	if err != nil {
		a.log.Warn("walk image", "image", img.Name, "error", err)
		return nil, false
	}
	keys = make(map[string]bool, len(descs)+1)
	src := &policy.Source{Image: img.Name, Pinned: img.Pinned, Labels: img.Labels}
	for _, d := range descs {
		ref := &policy.Reference{Registry: img.Registry, Repository: img.Repository,
			Digest: d.Digest.String(), Kind: kindOf(d)}
		keys[DigestKey(d.Digest)] = a.allowed(ctx, ref, d, src)
	}
	if img.Tag != "" && len(descs) > 0 && descs[0].Digest == img.Target.Digest {
		ref := &policy.Reference{Registry: img.Registry, Repository: img.Repository,
			Tag: img.Tag, Kind: policy.KindManifest}
		keys[TagKey(img.Registry, img.Repository, img.Tag)] = a.allowed(ctx, ref, img.Target, src)
	}
	return keys, true
}

func kindOf(d ocispec.Descriptor) string {
	if store.IsManifestOrIndex(d.MediaType) {
		return policy.KindManifest
	}
	return policy.KindBlob
}

// allowed asks the policy whether a key may be advertised. No policy
// allows everything; an engine error is a deny.
func (a *Advertiser) allowed(ctx context.Context, ref *policy.Reference, d ocispec.Descriptor, src *policy.Source) bool {
	if a.policy == nil {
		return true
	}
	in := policy.Input{
		Action:    policy.ActionAdvertise,
		Reference: ref,
		MediaType: d.MediaType,
		Size:      d.Size,
		Source:    src,
	}
	dec, err := a.policy.Decide(ctx, policy.ActionAdvertise, in)
	if err != nil {
		a.log.Warn("advertise policy error, not advertising", "image", src.Image,
			"digest", ref.Digest, "tag", ref.Tag, "error", err)
		return false
	}
	if !dec.Allow {
		a.log.Debug("advertise denied", "image", src.Image, "digest", ref.Digest,
			"tag", ref.Tag, "reasons", dec.Reasons)
	}
	return dec.Allow
}

// desired returns the keys allowed by at least one image.
func desired(images map[string]map[string]bool) map[string]bool {
	out := map[string]bool{}
	for _, keys := range images {
		for k, ok := range keys {
			if ok {
				out[k] = true
			}
		}
	}
	return out
}

// scanAll rebuilds the key sets of every image in the store. Images that
// cannot be walked keep their previous key set.
func (a *Advertiser) scanAll(ctx context.Context) error {
	imgs, err := a.store.Images(ctx)
	if err != nil {
		return err
	}
	next := make(map[string]map[string]bool, len(imgs))
	for _, img := range imgs {
		if keys, ok := a.imageKeys(ctx, img); ok {
			next[img.Name] = keys
		} else if prev, had := a.images[img.Name]; had {
			next[img.Name] = maps.Clone(prev)
		}
	}
	a.images = next
	return nil
}

// scanImage rebuilds the key set of one image after a create or update
// event, using the event's image when it carries a target.
func (a *Advertiser) scanImage(ctx context.Context, img store.Image) {
	if img.Target.Digest == "" {
		imgs, err := a.store.Images(ctx)
		if err != nil {
			a.log.Warn("list images", "error", err)
			return
		}
		found := false
		for _, i := range imgs {
			if i.Name == img.Name {
				img, found = i, true
				break
			}
		}
		if !found {
			delete(a.images, img.Name)
			return
		}
	}
	if keys, ok := a.imageKeys(ctx, img); ok {
		a.images[img.Name] = keys
	}
}

// logger returns l or a silent logger.
func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
