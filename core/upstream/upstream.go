package upstream

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"

	"github.com/containerd/containerd/v2/core/images"
	"github.com/containerd/containerd/v2/core/remotes/docker"
	remoteerrors "github.com/containerd/containerd/v2/core/remotes/errors"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// ErrUnauthorized is returned (wrapped) when an endpoint refused the
// credentials, or asked for some and none were configured.
var ErrUnauthorized = errors.New("upstream refused authorization")

// ErrDigestMismatch is returned (wrapped) by a read when content from the
// upstream does not match its digest or size.
var ErrDigestMismatch = errors.New("upstream content does not match its digest")

// Client fetches content from the upstream of a registry: its mirror
// endpoints in order, then the registry itself, with the TLS settings and
// credentials of registries.yaml. It keeps no content and no tags; safe for
// concurrent use.
type Client struct {
	reg   *config.Registries
	opts  options
	log   *slog.Logger
	guard guard // refuses loopback and link-local hosts registries.yaml does not name

	mu sync.Mutex
	// clients are the HTTP clients of hosts with TLS settings, one per
	// host and setting (bounded by registries.yaml), and one shared by
	// every other host under the key clientKey{}.
	clients map[clientKey]*http.Client
}

// Option configures a Client.
type Option func(*options)

type options struct {
	userAgent     string
	logger        *slog.Logger
	wrapTransport func(http.RoundTripper) http.RoundTripper
}

// WithUserAgent sets the User-Agent of every request.
func WithUserAgent(ua string) Option { return func(o *options) { o.userAgent = ua } }

// WithLogger sets the logger; the client is silent without one.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithTransport wraps every endpoint's transport (metrics, tests).
func WithTransport(wrap func(http.RoundTripper) http.RoundTripper) Option {
	return func(o *options) { o.wrapTransport = wrap }
}

// New makes a client for the registries of reg. A nil reg means no mirrors
// and no configs: every registry is asked directly and anonymously. reg
// must not change afterwards; on a reload make a new Client.
func New(reg *config.Registries, opts ...Option) *Client {
	o := options{userAgent: "sluice"}
	for _, opt := range opts {
		opt(&o)
	}
	l := o.logger
	if l == nil {
		l = slog.New(slog.DiscardHandler)
	}
	return &Client{reg: reg, opts: o, log: l, guard: newGuard(reg), clients: map[clientKey]*http.Client{}}
}

// Endpoints returns the endpoints of a registry in the order they are
// tried. They are worked out on each call: registry names come from peers,
// and nothing per registry is kept.
func (c *Client) Endpoints(registry string) ([]Endpoint, error) {
	return c.endpoints(registry)
}

// Upstream describes, for the `fetch` policy input, where a fetch for the
// registry goes first and whether credentials would be used.
func (c *Client) Upstream(registry string) (Upstream, error) {
	eps, err := c.Endpoints(registry)
	if err != nil {
		return Upstream{}, err
	}
	u := Upstream{Endpoint: eps[0].URL}
	if c.reg != nil && registry != config.Wildcard {
		_, u.Explicit = c.reg.Mirrored[registry]
	}
	for _, e := range eps {
		u.Credentials = u.Credentials || e.Credentials
	}
	return u, nil
}

// Resolve asks the upstream, now, what ref names: a tag gives the digest,
// media type and size the upstream has for it at this moment (a HEAD); a
// digest is checked to exist, as a manifest, else as a blob (two HEADs).
// Nothing is cached: a caller that wants to coalesce a burst holds the
// result itself.
func (c *Client) Resolve(ctx context.Context, ref oci.Reference) (ocispec.Descriptor, error) {
	if ref.Tag == "" && ref.Digest == "" {
		return ocispec.Descriptor{}, fmt.Errorf("upstream resolve %s: no tag or digest", ref)
	}
	s, err := c.session(ref.Registry)
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	return c.resolve(ctx, s, ref)
}

// resolve resolves a tag across all endpoints at once, as containerd does,
// and a digest one endpoint at a time (stat).
func (c *Client) resolve(ctx context.Context, s *session, ref oci.Reference) (ocispec.Descriptor, error) {
	var desc ocispec.Descriptor
	var err error
	if ref.Digest != "" {
		desc, _, err = c.stat(ctx, s, ref)
	} else {
		_, desc, err = s.resolver(0, len(s.hosts)).Resolve(ctx, ref.String())
		if err != nil {
			err = classify("resolve", ref, err)
		}
	}
	if err != nil {
		return ocispec.Descriptor{}, err
	}
	c.log.DebugContext(ctx, "upstream resolved", "ref", ref.String(), "digest", desc.Digest, "media_type", desc.MediaType, "size", desc.Size)
	return ocispec.Descriptor{MediaType: desc.MediaType, Digest: desc.Digest, Size: desc.Size}, nil
}

// Manifest fetches the manifest or index desc describes (as Resolve
// returned it) and checks it against desc's digest and size.
func (c *Client) Manifest(ctx context.Context, ref oci.Reference, desc ocispec.Descriptor) ([]byte, error) {
	s, err := c.session(ref.Registry)
	if err != nil {
		return nil, err
	}
	return c.manifest(ctx, s, ref, desc)
}

func (c *Client) manifest(ctx context.Context, s *session, ref oci.Reference, desc ocispec.Descriptor) ([]byte, error) {
	ref.Digest = desc.Digest
	if !images.IsManifestType(desc.MediaType) && !images.IsIndexType(desc.MediaType) {
		return nil, fmt.Errorf("upstream manifest %s: media type %q is not a manifest: %w", ref, desc.MediaType, store.ErrNotFound)
	}
	if desc.Size < 0 || desc.Size > docker.MaxManifestSize {
		return nil, fmt.Errorf("upstream manifest %s: size %d out of range", ref, desc.Size)
	}
	rc, err := c.open(ctx, s, 0, ref, desc)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("upstream manifest %s: %w", ref, err)
	}
	return b, nil
}

// FetchManifest resolves ref (tag or digest) and fetches the manifest it
// names: two requests, a HEAD and a GET, under one authorization.
func (c *Client) FetchManifest(ctx context.Context, ref oci.Reference) ([]byte, ocispec.Descriptor, error) {
	if ref.Tag == "" && ref.Digest == "" {
		return nil, ocispec.Descriptor{}, fmt.Errorf("upstream manifest %s: no tag or digest", ref)
	}
	s, err := c.session(ref.Registry)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	desc, err := c.resolve(ctx, s, ref)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	b, err := c.manifest(ctx, s, ref, desc)
	if err != nil {
		return nil, ocispec.Descriptor{}, err
	}
	return b, desc, nil
}

// Blob is an open blob streaming from the upstream. Read returns
// ErrDigestMismatch instead of io.EOF when the bytes do not match.
type Blob struct {
	io.ReadCloser
	Descriptor ocispec.Descriptor
}

// Blob opens the blob dgst of ref's repository. size < 0 means unknown:
// the size is asked first (a HEAD, as containerd resolves a digest). The
// first response has arrived when Blob returns, so a missing blob or a
// refused credential is an error here, not on the first Read. The stream
// lives as long as ctx.
func (c *Client) Blob(ctx context.Context, ref oci.Reference, dgst digest.Digest, size int64) (*Blob, error) {
	if err := dgst.Validate(); err != nil {
		return nil, fmt.Errorf("upstream blob %s: %w", ref, err)
	}
	ref.Tag, ref.Digest = "", dgst
	s, err := c.session(ref.Registry)
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: "application/octet-stream", Digest: dgst, Size: size}
	if size < 0 {
		return c.blobByDigest(ctx, s, ref, dgst)
	}
	rc, err := c.open(ctx, s, 0, ref, desc)
	if err != nil {
		return nil, err
	}
	return &Blob{ReadCloser: rc, Descriptor: desc}, nil
}

// stat describes a digest: containerd's Resolve on one endpoint at a time
// (a HEAD on manifests, then on blobs), the next endpoint on any error, and
// the index of the endpoint that answered. Across all endpoints at once, a
// 5xx from one mirror would stop containerd's fallback from the manifests
// path to the blobs path.
func (c *Client) stat(ctx context.Context, s *session, ref oci.Reference) (ocispec.Descriptor, int, error) {
	var errs []error
	notFound := true
	for i, e := range s.eps {
		_, d, err := s.resolver(i, i+1).Resolve(ctx, ref.String())
		if err == nil {
			return d, i, nil
		}
		if ctx.Err() != nil {
			return ocispec.Descriptor{}, 0, classify("resolve", ref, err)
		}
		notFound = notFound && errdefs.IsNotFound(err)
		errs = append(errs, fmt.Errorf("%s: %w", e.URL, err))
	}
	err := errors.Join(errs...)
	if notFound {
		err = fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return ocispec.Descriptor{}, 0, classify("resolve", ref, err)
}

// open fetches desc with containerd's fetcher (the endpoints from the
// from-th on, in order; the manifests or blobs path by media type), waits
// for the first response and verifies what is read.
func (c *Client) open(ctx context.Context, s *session, from int, ref oci.Reference, desc ocispec.Descriptor) (io.ReadCloser, error) {
	f, err := s.resolver(from, len(s.hosts)).Fetcher(ctx, ref.String())
	if err != nil {
		return nil, classify("fetch", ref, err)
	}
	rc, err := f.Fetch(ctx, desc)
	if err != nil {
		return nil, classify("fetch", ref, err)
	}
	// containerd opens lazily: the first read sends the request.
	br := bufio.NewReaderSize(rc, 32<<10)
	if _, err := br.Peek(1); err != nil && !errors.Is(err, io.EOF) {
		rc.Close()
		return nil, classify("fetch", ref, err)
	}
	return &verifier{r: br, c: rc, desc: desc, v: desc.Digest.Verifier(), ref: ref}, nil
}

// classify wraps a containerd error with the sentinel a caller branches
// on: store.ErrNotFound (every endpoint said 404) or ErrUnauthorized.
func classify(op string, ref oci.Reference, err error) error {
	if errdefs.IsNotFound(err) {
		return fmt.Errorf("upstream %s %s: %w: %w", op, ref, store.ErrNotFound, err)
	}
	if isUnauthorized(err) {
		return fmt.Errorf("upstream %s %s: %w: %w", op, ref, ErrUnauthorized, err)
	}
	return fmt.Errorf("upstream %s %s: %w", op, ref, err)
}

func isUnauthorized(err error) bool {
	if errors.Is(err, docker.ErrInvalidAuthorization) {
		return true
	}
	var st remoteerrors.ErrUnexpectedStatus
	if errors.As(err, &st) {
		return st.StatusCode == http.StatusUnauthorized || st.StatusCode == http.StatusForbidden
	}
	return false
}

// verifier hashes what passes through and turns the final io.EOF into
// ErrDigestMismatch when the bytes or their count are wrong.
type verifier struct {
	r    io.Reader
	c    io.Closer
	desc ocispec.Descriptor
	v    digest.Verifier
	n    int64
	ref  oci.Reference
}

func (v *verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	if n > 0 {
		v.v.Write(p[:n])
		v.n += int64(n)
	}
	if v.n > v.desc.Size {
		return n, fmt.Errorf("upstream %s: more than %d bytes: %w", v.ref, v.desc.Size, ErrDigestMismatch)
	}
	if errors.Is(err, io.EOF) {
		if v.n != v.desc.Size || !v.v.Verified() {
			return n, fmt.Errorf("upstream %s: %d of %d bytes read: %w", v.ref, v.n, v.desc.Size, ErrDigestMismatch)
		}
		return n, io.EOF
	}
	if err != nil {
		return n, fmt.Errorf("upstream %s: %w", v.ref, err)
	}
	return n, nil
}

func (v *verifier) Close() error { return v.c.Close() }
