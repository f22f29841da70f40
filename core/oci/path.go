package oci

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Kind of content a request asks for.
type Kind int

// Request kinds.
const (
	KindBase     Kind = iota + 1 // GET /v2/
	KindManifest                 // /v2/<name>/manifests/<ref>
	KindBlob                     // /v2/<name>/blobs/<digest>
)

func (k Kind) String() string {
	switch k {
	case KindBase:
		return "base"
	case KindManifest:
		return "manifest"
	case KindBlob:
		return "blob"
	}
	return "unknown"
}

// MaxNameLength bounds registry + repository, as distribution does.
const MaxNameLength = 255

// Request is a parsed distribution API request.
type Request struct {
	Kind Kind
	Ref  Reference
}

// Reference is a normalised image reference: registry, repository and
// either a tag or a digest.
type Reference struct {
	Registry   string
	Repository string
	Tag        string
	Digest     digest.Digest
}

// Name returns registry/repository.
func (r Reference) Name() string { return r.Registry + "/" + r.Repository }

// String returns the full reference: registry/repository:tag or @digest.
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest.String()
	}
	return s
}

// TagKey is the DHT key of a tag: registry/repository:tag.
func (r Reference) TagKey() string { return r.Registry + "/" + r.Repository + ":" + r.Tag }

// ParseRequest parses the path and ?ns= of a distribution request.
// defaultRegistry is used when ns is absent. Unsupported endpoints (push,
// catalog, tag list, referrers) return an *Error with 405 UNSUPPORTED;
// malformed names and digests a 400 with the spec's code.
func ParseRequest(method string, u *url.URL, defaultRegistry string) (Request, error) {
	p := u.Path
	if p == "/v2" || p == "/v2/" {
		return Request{Kind: KindBase}, nil
	}
	if !strings.HasPrefix(p, "/v2/") {
		return Request{}, Errorf(http.StatusNotFound, CodeNameUnknown, "not a distribution API path")
	}
	if method != http.MethodGet && method != http.MethodHead {
		return Request{}, Errorf(http.StatusMethodNotAllowed, CodeUnsupported, "sluice is a read-only mirror: %s is not supported", method)
	}
	rest := strings.TrimPrefix(p, "/v2/")
	var kind Kind
	var name, ref string
	switch {
	case rest == "_catalog":
		return Request{}, Errorf(http.StatusMethodNotAllowed, CodeUnsupported, "catalog is not supported")
	case cutLast(rest, "/manifests/", &name, &ref):
		kind = KindManifest
	case cutLast(rest, "/blobs/", &name, &ref):
		if strings.HasPrefix(ref, "uploads") {
			return Request{}, Errorf(http.StatusMethodNotAllowed, CodeUnsupported, "uploads are not supported")
		}
		kind = KindBlob
	case strings.HasSuffix(rest, "/tags/list"), strings.Contains(rest, "/referrers/"):
		return Request{}, Errorf(http.StatusMethodNotAllowed, CodeUnsupported, "tag listing and referrers are not supported")
	default:
		return Request{}, Errorf(http.StatusNotFound, CodeNameUnknown, "unknown distribution API path")
	}
	ns := u.Query()["ns"]
	if len(ns) > 1 {
		// Which one would a policy have been asked about? Refuse rather
		// than pick.
		return Request{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "%d ns parameters, want at most one", len(ns))
	}
	var registry string
	if len(ns) == 1 {
		registry = ns[0]
	}
	registry, err := ParseRegistry(registry, defaultRegistry)
	if err != nil {
		return Request{}, err
	}
	r, err := NewReference(registry, name)
	if err != nil {
		return Request{}, err
	}
	if kind == KindBlob || strings.Contains(ref, ":") {
		d, err := ParseDigest(ref)
		if err != nil {
			return Request{}, err
		}
		r.Digest = d
	} else {
		if !anchoredTag.MatchString(ref) {
			return Request{}, Errorf(http.StatusBadRequest, CodeManifestInvalid, "invalid tag %q", truncate(ref))
		}
		r.Tag = ref
	}
	return Request{Kind: kind, Ref: r}, nil
}

// cutLast splits s at the last sep, which must leave both sides non-empty.
func cutLast(s, sep string, before, after *string) bool {
	i := strings.LastIndex(s, sep)
	if i <= 0 || i+len(sep) >= len(s) {
		return false
	}
	*before, *after = s[:i], s[i+len(sep):]
	return true
}

// ParseDigest validates a digest string: known algorithm, right length.
func ParseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		if errors.Is(err, digest.ErrDigestUnsupported) {
			return "", Errorf(http.StatusBadRequest, CodeDigestInvalid, "unsupported digest algorithm in %q", truncate(s))
		}
		return "", Errorf(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q: %v", truncate(s), err)
	}
	return d, nil
}

// anchoredDomain matches a whole registry host[:port]; immutable.
var anchoredDomain = regexp.MustCompile(`^(?:` + reference.DomainRegexp.String() + `)$`)

// anchoredTag matches a whole tag; immutable.
var anchoredTag = regexp.MustCompile(`^(?:` + reference.TagRegexp.String() + `)$`)

// ParseRegistry validates the ns value (a registry host, optionally with a
// port) and normalises it (NormalizeRegistry). Empty means defaultRegistry.
func ParseRegistry(ns, defaultRegistry string) (string, error) {
	if ns == "" {
		ns = defaultRegistry
	}
	if ns == "" || len(ns) > MaxNameLength || !anchoredDomain.MatchString(ns) {
		return "", Errorf(http.StatusBadRequest, CodeNameInvalid, "invalid registry %q", truncate(ns))
	}
	return NormalizeRegistry(ns), nil
}

// NormalizeRegistry folds case (host names are case-insensitive, and a
// policy compares them as strings) and maps docker.io's aliases to
// docker.io.
func NormalizeRegistry(host string) string {
	host = strings.ToLower(host)
	switch host {
	case "index.docker.io", "registry-1.docker.io":
		return "docker.io"
	}
	return host
}

// NewReference validates registry/name and applies docker.io's library/
// normalisation. The result has no tag or digest.
func NewReference(registry, name string) (Reference, error) {
	if len(registry)+1+len(name) > MaxNameLength {
		return Reference{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "name longer than %d characters", MaxNameLength)
	}
	n, err := reference.ParseNormalizedNamed(registry + "/" + name)
	if err != nil || reference.Domain(n) != registry || !reference.IsNameOnly(n) {
		return Reference{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q", truncate(name))
	}
	// docker.io's library/ prefix can take a name over the limit.
	if len(n.Name()) > MaxNameLength {
		return Reference{}, Errorf(http.StatusBadRequest, CodeNameInvalid, "name longer than %d characters", MaxNameLength)
	}
	return Reference{Registry: reference.Domain(n), Repository: reference.Path(n)}, nil
}

// ParseImageName parses a full image name as containerd stores it
// (docker.io/library/nginx:1.27, registry:5000/x/y@sha256:…).
func ParseImageName(s string) (Reference, error) {
	n, err := reference.ParseNormalizedNamed(s)
	if err != nil {
		return Reference{}, fmt.Errorf("parse image name %q: %w", s, err)
	}
	if reference.Domain(n) == "" {
		// distribution/reference accepts "0_0.0/x" as a path without a
		// domain (the first component is neither a host nor docker.io's).
		return Reference{}, fmt.Errorf("parse image name %q: no registry", s)
	}
	r := Reference{Registry: NormalizeRegistry(reference.Domain(n)), Repository: reference.Path(n)}
	if !strings.ContainsAny(r.Registry, ".:") && r.Registry != "localhost" {
		// "Upper/x" names the host "Upper" only by its capitals; folded,
		// it would be a Docker Hub path, and no request can name it.
		return Reference{}, fmt.Errorf("parse image name %q: registry %q is a host name only by its case", s, reference.Domain(n))
	}
	if r.Registry == "docker.io" && !strings.Contains(r.Repository, "/") {
		// An alias (registry-1.docker.io/foo) gets the library/ prefix that
		// docker.io/foo gets, so store names and requests agree.
		r.Repository = "library/" + r.Repository
	}
	if t, ok := n.(reference.Tagged); ok {
		r.Tag = t.Tag()
	}
	if d, ok := n.(reference.Digested); ok {
		r.Digest = d.Digest()
	}
	return r, nil
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
