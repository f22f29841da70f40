package upstreamtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/distribution/distribution/v3/registry/auth/token"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/internal/testimage"
)

// Push uploads img to repo (e.g. "library/app") and points tag at its
// target; an empty tag pushes by digest only. It talks to the registry
// directly, so nothing is counted. Pushing another image under the same
// tag moves the tag.
func (r *Registry) Push(ctx context.Context, repo, tag string, img *testimage.Image) error {
	isManifest := func(d digest.Digest) bool {
		mt := img.Types[d]
		return mt == ocispec.MediaTypeImageManifest || mt == ocispec.MediaTypeImageIndex
	}
	for _, d := range img.Digests() {
		if isManifest(d) {
			continue
		}
		if err := r.pushBlob(ctx, repo, d, img.Blobs[d]); err != nil {
			return err
		}
	}
	if img.Target.MediaType == ocispec.MediaTypeImageIndex {
		for _, m := range img.Manifests {
			if err := r.pushManifest(ctx, repo, m.Digest.String(), m.MediaType, img.Blobs[m.Digest]); err != nil {
				return err
			}
		}
	}
	ref := tag
	if ref == "" {
		ref = img.Target.Digest.String()
	}
	return r.pushManifest(ctx, repo, ref, img.Target.MediaType, img.Blobs[img.Target.Digest])
}

// PushBlob uploads one blob (to corrupt or add content in a test).
func (r *Registry) PushBlob(ctx context.Context, repo string, b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	return d, r.pushBlob(ctx, repo, d, b)
}

// Delete removes a manifest (by digest) or a blob from repo.
func (r *Registry) Delete(ctx context.Context, repo string, kind Kind, d digest.Digest) error {
	p := "/manifests/"
	if kind == KindBlob {
		p = "/blobs/"
	}
	resp, err := r.do(ctx, http.MethodDelete, r.api(repo)+p+d.String(), repo, "", nil)
	if err != nil {
		return err
	}
	return expect(resp, http.StatusAccepted)
}

func (r *Registry) pushBlob(ctx context.Context, repo string, d digest.Digest, b []byte) error {
	resp, err := r.do(ctx, http.MethodPost, r.api(repo)+"/blobs/uploads/", repo, "", nil)
	if err != nil {
		return err
	}
	if err := expect(resp, http.StatusAccepted); err != nil {
		return fmt.Errorf("start upload of %s: %w", d, err)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	if prefix := strings.TrimSuffix(r.opts.Prefix, "/"); !loc.IsAbs() && !strings.HasPrefix(loc.Path, prefix+"/") {
		// distribution leaves its prefix out of relative upload URLs.
		loc.Path = prefix + loc.Path
	}
	base, _ := url.Parse(r.backend.URL)
	u := base.ResolveReference(loc)
	q := u.Query()
	q.Set("digest", d.String())
	u.RawQuery = q.Encode()
	resp, err = r.do(ctx, http.MethodPut, u.String(), repo, "application/octet-stream", b)
	if err != nil {
		return err
	}
	if err := expect(resp, http.StatusCreated); err != nil {
		return fmt.Errorf("upload %s: %w", d, err)
	}
	return nil
}

func (r *Registry) pushManifest(ctx context.Context, repo, ref, mediaType string, b []byte) error {
	resp, err := r.do(ctx, http.MethodPut, r.api(repo)+"/manifests/"+ref, repo, mediaType, b)
	if err != nil {
		return err
	}
	if err := expect(resp, http.StatusCreated); err != nil {
		return fmt.Errorf("put manifest %s:%s: %w", repo, ref, err)
	}
	return nil
}

// api is the backend URL of a repository: <backend><prefix>/v2/<repo>.
func (r *Registry) api(repo string) string {
	return r.backend.URL + strings.TrimSuffix(r.opts.Prefix, "/") + "/v2/" + repo
}

// do sends a request to the backend with full rights on repo.
func (r *Registry) do(ctx context.Context, method, u, repo, contentType string, body []byte) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	switch r.opts.Auth {
	case AuthBasic:
		req.SetBasicAuth(r.opts.Username, r.opts.Password)
	case AuthToken:
		raw, err := r.tokens.sign("upstreamtest-pusher", []*token.ResourceActions{{
			Type: "repository", Name: repo, Actions: []string{"pull", "push", "delete"}}})
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+raw)
	}
	resp, err := r.backend.Client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, u, err)
	}
	return resp, nil
}

func expect(resp *http.Response, status int) error {
	defer resp.Body.Close()
	if resp.StatusCode == status {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return fmt.Errorf("%s %s: %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status, strings.TrimSpace(string(b)))
}
