package coalesce

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/policy"
)

// manifest is a manifest fetched from the upstream, verified.
type manifest struct {
	bytes     []byte
	mediaType string
	expires   time.Time
	ref       oci.Reference     // what it was fetched as (registry, repository, digest)
	up        upstream.Upstream // the upstream its fetch decision saw
}

// tagEntry is what a tag resolved to upstream, and when.
type tagEntry struct {
	d  digest.Digest
	at time.Time
}

// serveTag answers a coalesce request for a tag: resolved upstream fresh,
// once per tag TTL whatever the number of requesters.
func (c *Coalescer) serveTag(ctx context.Context, w http.ResponseWriter, r *http.Request, ref oci.Reference, peer *policy.Peer) error {
	up, info, ok := c.allowed(ctx, ref, policy.KindManifest, peer)
	if !ok {
		return store.ErrNotFound
	}
	key := ref.TagKey()
	m, d, ok := c.tagged(key, time.Now())
	if !ok {
		res, err := c.flight(ctx, "tag "+key, func(fctx context.Context) (digest.Digest, error) {
			b, desc, err := up.FetchManifest(fctx, ref)
			if err != nil {
				c.rest(ref.Registry, err)
				return "", err
			}
			c.m.CoalesceUpstreamBytes.Add(float64(len(b)))
			d := digest.FromBytes(b)
			if desc.Digest != "" && desc.Digest != d {
				return "", fmt.Errorf("upstream manifest %s: %d bytes do not match the resolved digest %s", ref, len(b), desc.Digest)
			}
			c.keepManifest(d, b, desc.MediaType, ref, info)
			c.mu.Lock()
			c.tags[key] = tagEntry{d: d, at: time.Now()}
			c.mu.Unlock()
			return d, nil
		})
		if err != nil {
			return err
		}
		if m, d, ok = c.byDigest(res); !ok {
			return store.ErrNotFound
		}
	}
	writeManifest(w, r, m, d)
	return nil
}

// serveManifest answers a manifest by digest: kept, or with fetch fetched.
func (c *Coalescer) serveManifest(ctx context.Context, w http.ResponseWriter, r *http.Request, ref oci.Reference, peer *policy.Peer, fetch bool) error {
	m, _, ok := c.byDigest(ref.Digest)
	if ok && !c.decide(ctx, m.ref, policy.KindManifest, peer, m.up) {
		return store.ErrNotFound
	}
	if !ok {
		if !fetch {
			return store.ErrNotFound
		}
		up, info, ok := c.allowed(ctx, ref, policy.KindManifest, peer)
		if !ok {
			return store.ErrNotFound
		}
		if _, err := c.flight(ctx, "manifest "+ref.Digest.String(), func(fctx context.Context) (digest.Digest, error) {
			b, desc, err := up.FetchManifest(fctx, ref)
			if err != nil {
				c.rest(ref.Registry, err)
				return "", err
			}
			c.m.CoalesceUpstreamBytes.Add(float64(len(b)))
			if !ref.Digest.Algorithm().Available() || ref.Digest.Algorithm().FromBytes(b) != ref.Digest {
				return "", fmt.Errorf("upstream manifest %s: bytes do not match the digest", ref)
			}
			c.keepManifest(ref.Digest, b, desc.MediaType, ref, info)
			return ref.Digest, nil
		}); err != nil {
			return err
		}
		if m, _, ok = c.byDigest(ref.Digest); !ok {
			return store.ErrNotFound
		}
	}
	writeManifest(w, r, m, ref.Digest)
	return nil
}

// flight runs fetch once for every caller of key at the same time, in the
// background (it survives the request that started it), and waits for it
// at most the first-byte bound. Any failure is store.ErrNotFound for the
// requester, which then goes upstream itself.
func (c *Coalescer) flight(ctx context.Context, key string, fetch func(context.Context) (digest.Digest, error)) (digest.Digest, error) {
	ch := c.flights.DoChan(key, func() (any, error) {
		fctx, cancel := context.WithTimeout(c.ctx, 30*time.Second)
		defer cancel()
		d, err := fetch(fctx)
		result := "ok"
		if err != nil {
			c.log.Warn("coalesce: upstream fetch failed", "what", key, "err", err)
			result = "failed"
		}
		c.m.CoalesceFetches.WithLabelValues(policy.KindManifest, result).Inc()
		return d, err
	})
	c.m.CoalesceWaiters.Inc()
	defer c.m.CoalesceWaiters.Dec()
	wctx, cancel := context.WithTimeout(ctx, c.cfg.FirstByte)
	defer cancel()
	select {
	case res := <-ch:
		if res.Err != nil {
			return "", fmt.Errorf("%s: %v: %w", key, res.Err, store.ErrNotFound)
		}
		return res.Val.(digest.Digest), nil
	case <-wctx.Done():
		return "", fmt.Errorf("%s: upstream slower than %v: %w", key, c.cfg.FirstByte, store.ErrNotFound)
	}
}

func (c *Coalescer) keepManifest(d digest.Digest, b []byte, mediaType string, ref oci.Reference, up upstream.Upstream) {
	ref.Tag, ref.Digest = "", d
	if !store.IsManifestOrIndex(mediaType) {
		if det := oci.DetectManifestMediaType(b); det != "" {
			mediaType = det
		}
	}
	c.mu.Lock()
	old, had := c.manifests[d]
	if had {
		c.addUsedLocked(-int64(len(old.bytes)))
	}
	// Manifests count against the spool cap too: a peer naming many
	// digests cannot grow the node's memory past what the operator set.
	if c.used+int64(len(b)) > c.cfg.MaxBytes {
		delete(c.manifests, d)
		c.mu.Unlock()
		c.log.Warn("coalesce: spool full; manifest not kept", "digest", d)
		return
	}
	c.addUsedLocked(int64(len(b)))
	c.manifests[d] = &manifest{bytes: b, mediaType: mediaType, expires: time.Now().Add(max(c.cfg.TTL, c.cfg.TagTTL)), ref: ref, up: up}
	c.mu.Unlock()
	if !had {
		c.advertise(d)
	}
}

func (c *Coalescer) tagged(key string, now time.Time) (*manifest, digest.Digest, bool) {
	c.mu.Lock()
	t, ok := c.tags[key]
	c.mu.Unlock()
	if !ok || now.After(t.at.Add(c.cfg.TagTTL)) {
		return nil, "", false
	}
	return c.byDigest(t.d)
}

func (c *Coalescer) byDigest(d digest.Digest) (*manifest, digest.Digest, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m, ok := c.manifests[d]
	return m, d, ok
}

func writeManifest(w http.ResponseWriter, r *http.Request, m *manifest, d digest.Digest) {
	h := w.Header()
	h.Set("Content-Type", m.mediaType)
	h.Set("Content-Length", strconv.Itoa(len(m.bytes)))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(m.bytes)
	}
}
