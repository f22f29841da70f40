package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Fuzz targets for every parser of untrusted input in this package. Seed
// corpora live in testdata/fuzz/<Target>/ (go test fuzz v1 files) besides
// the f.Add seeds below. Run one with
//
//	go test ./core/oci -run '^$' -fuzz '^FuzzParseRequest$' -fuzztime 20s

const fuzzDigest = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// wantOCIError fails unless err is an *Error with a 4xx status.
func wantOCIError(t *testing.T, err error, statuses ...int) *Error {
	t.Helper()
	var oe *Error
	if !errors.As(err, &oe) {
		t.Fatalf("error %v (%T) is not an *oci.Error", err, err)
	}
	if oe.Status < 400 || oe.Status > 499 || oe.Code == "" {
		t.Fatalf("error %v has status %d code %q, want a coded 4xx", err, oe.Status, oe.Code)
	}
	if len(statuses) > 0 && !containsInt(statuses, oe.Status) {
		t.Fatalf("error %v has status %d, want one of %v", err, oe.Status, statuses)
	}
	return oe
}

func containsInt(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// checkRepository fails when a repository that passed validation could
// still name a path outside the store or the API: empty or dot segments,
// escapes, absolute or over-long names.
func checkRepository(t *testing.T, ref Reference) {
	t.Helper()
	if ref.Registry == "" || ref.Repository == "" {
		t.Fatalf("empty registry or repository in %+v", ref)
	}
	if strings.ContainsAny(ref.Repository, "%\\?#:@ \x00") || strings.HasPrefix(ref.Repository, "/") {
		t.Fatalf("repository %q holds a forbidden character", ref.Repository)
	}
	for _, seg := range strings.Split(ref.Repository, "/") {
		if seg == "" || seg == "." || seg == ".." {
			t.Fatalf("repository %q has segment %q", ref.Repository, seg)
		}
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []struct{ method, path, query string }{
		{"GET", "/v2/", ""},
		{"GET", "/v2/library/nginx/manifests/1.27", "ns=docker.io"},
		{"HEAD", "/v2/nginx/manifests/latest", ""},
		{"GET", "/v2/library/nginx/manifests/" + fuzzDigest, "ns=docker.io"},
		{"GET", "/v2/library/nginx/blobs/" + fuzzDigest, "ns=registry-1.docker.io"},
		{"GET", "/v2/org/app/blobs/" + fuzzDigest, "ns=quay.io:443"},
		{"GET", "/v2/a/b/c/manifests/v1", "ns=localhost:5000"},
		{"GET", "/v2/../../etc/passwd/manifests/x", ""},
		{"GET", "/v2/%2e%2e/blobs/" + fuzzDigest, ""},
		{"GET", "/v2/a/blobs/uploads/", ""},
		{"PUT", "/v2/a/manifests/v1", ""},
		{"GET", "/v2/_catalog", ""},
		{"GET", "/v2/a/tags/list", ""},
		{"GET", "/v2/a/referrers/" + fuzzDigest, ""},
		{"GET", "/v2/a/blobs/sha512:abc", ""},
		{"GET", "/v2/a/blobs/md5:d41d8cd98f00b204e9800998ecf8427e", ""},
		{"GET", "/v2/a/manifests/" + strings.Repeat("t", 200), ""},
		{"GET", "/v2/a/manifests/v1", "ns=" + strings.Repeat("a", 300) + ".io"},
		{"GET", "/v2/a/manifests/blobs/x", "ns=%00"},
		{"GET", "/v2/library/alpine/blobs/" + fuzzDigest, "ns=REGISTRY.INTERNAL"},
		{"GET", "/v2/library/alpine/manifests/3.20", "ns=Docker.IO:5000"},
		{"GET", "/v2/library/alpine/manifests/3.20", "ns=docker.io&ns=quay.io"},
		{"GET", "/v2/library/alpine/blobs/" + fuzzDigest, "ns=docker.io&ns=docker.io"},
		{"GET", "/v2/library/alpine/blobs/" + fuzzDigest, "ns=&ns=quay.io"},
	} {
		f.Add(s.method, s.path, s.query)
	}
	f.Fuzz(func(t *testing.T, method, path, query string) {
		u := &url.URL{Path: path, RawQuery: query}
		req, err := ParseRequest(method, u, "docker.io")
		if err != nil {
			wantOCIError(t, err, http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed)
			return
		}
		if q, qerr := url.ParseQuery(query); qerr == nil && len(q["ns"]) > 1 && req.Kind != KindBase {
			t.Fatalf("%d ns parameters accepted: %+v", len(q["ns"]), req.Ref)
		}
		if req.Ref.Registry != strings.ToLower(req.Ref.Registry) {
			t.Fatalf("registry %q not case-folded", req.Ref.Registry)
		}
		if method != http.MethodGet && method != http.MethodHead && req.Kind != KindBase {
			t.Fatalf("%s %s accepted: %+v", method, path, req)
		}
		switch req.Kind {
		case KindBase:
			if req.Ref != (Reference{}) {
				t.Fatalf("base request with a reference: %+v", req.Ref)
			}
			return
		case KindManifest:
			if (req.Ref.Tag == "") == (req.Ref.Digest == "") {
				t.Fatalf("manifest request needs exactly one of tag and digest: %+v", req.Ref)
			}
		case KindBlob:
			if req.Ref.Tag != "" || req.Ref.Digest == "" {
				t.Fatalf("blob request without a digest: %+v", req.Ref)
			}
		default:
			t.Fatalf("unknown kind %d", req.Kind)
		}
		ref := req.Ref
		checkRepository(t, ref)
		if len(ref.Name()) > MaxNameLength {
			t.Fatalf("name %q longer than %d", ref.Name(), MaxNameLength)
		}
		if ref.Digest != "" {
			if err := ref.Digest.Validate(); err != nil {
				t.Fatalf("accepted digest %q does not validate: %v", ref.Digest, err)
			}
		}
		// The parsed registry and repository re-validate unchanged.
		reg, err := ParseRegistry(ref.Registry, "")
		if err != nil || reg != ref.Registry {
			t.Fatalf("registry %q re-validates as %q, %v", ref.Registry, reg, err)
		}
		again, err := NewReference(ref.Registry, ref.Repository)
		if err != nil || again.Name() != ref.Name() {
			t.Fatalf("name %q re-validates as %q, %v", ref.Name(), again.Name(), err)
		}
		// Round trip: the canonical request path parses to the same reference.
		kind := "manifests"
		if req.Kind == KindBlob {
			kind = "blobs"
		}
		r := ref.Tag
		if r == "" {
			r = ref.Digest.String()
		}
		u2 := &url.URL{Path: "/v2/" + ref.Repository + "/" + kind + "/" + r, RawQuery: url.Values{"ns": {ref.Registry}}.Encode()}
		req2, err := ParseRequest(http.MethodGet, u2, "other.example")
		if err != nil || req2 != req {
			t.Fatalf("round trip of %s: %+v, %v; want %+v", u2, req2, err, req)
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []struct {
		h    string
		size int64
	}{
		{"", 10}, {"bytes=0-", 10}, {"bytes=0-0", 10}, {"bytes=5-9", 10}, {"bytes=-3", 10},
		{"bytes=-0", 10}, {"bytes=9-", 10}, {"bytes=10-", 10}, {"bytes=3-2", 10},
		{"bytes=0-1,3-4", 10}, {"bytes=-1-2", 10}, {"bytes=0-99999999999999999999", 10},
		{"bytes=9223372036854775807-", 9223372036854775807}, {"bytes=0-9223372036854775807", 1},
		{"bytes=-9223372036854775807", 1 << 40}, {"bytes= 1-2", 10}, {"items=0-1", 10},
		{"bytes=+1-2", 10}, {"bytes=0x10-", 100}, {"bytes=0-", 0}, {"bytes=-5", 0},
	} {
		f.Add(s.h, s.size)
	}
	f.Fuzz(func(t *testing.T, h string, size int64) {
		if size < 0 {
			size = -(size + 1) // content sizes are never negative
		}
		r, ok, err := ParseRange(h, size)
		switch {
		case err != nil:
			if ok {
				t.Fatalf("ok with error %v", err)
			}
			wantOCIError(t, err, http.StatusRequestedRangeNotSatisfiable)
			return
		case !ok:
			if h != "" {
				t.Fatalf("Range %q ignored without an error", h)
			}
			return
		}
		if r.Start < 0 || r.Length < 1 || r.Start >= size || r.Length > size-r.Start {
			t.Fatalf("Range %q on %d bytes gave %+v, outside the content", h, size, r)
		}
		if strings.Contains(h, ",") {
			t.Fatalf("multi-range %q accepted", h)
		}
		// The Content-Range we would send parses back to the same window.
		cr := r.ContentRange(size)
		var first, last, total int64
		if n, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &first, &last, &total); err != nil || n != 3 ||
			first != r.Start || last != r.Start+r.Length-1 || total != size {
			t.Fatalf("Content-Range %q does not match %+v of %d", cr, r, size)
		}
	})
}

func FuzzParseDigest(f *testing.F) {
	for _, s := range []string{
		fuzzDigest, "sha256:" + strings.Repeat("0", 64), "sha256:" + strings.Repeat("A", 64),
		"sha512:" + strings.Repeat("ab", 64), "sha384:" + strings.Repeat("ab", 48), "md5:d41d8cd98f00b204e9800998ecf8427e",
		"sha256:", ":", "", "sha256:abc", "sha256:" + strings.Repeat("0", 65), "SHA256:" + strings.Repeat("0", 64),
		"sha256+b64:abc", "sha256:../../../etc/passwd", "sha256:%2e%2e",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDigest(s)
		if err != nil {
			oe := wantOCIError(t, err, http.StatusBadRequest)
			if oe.Code != CodeDigestInvalid {
				t.Fatalf("code %q, want %s", oe.Code, CodeDigestInvalid)
			}
			// The input is echoed truncated (80 bytes, each at most 4 when
			// quoted): the message stays bounded whatever the input.
			if len(oe.Message) > 512 {
				t.Fatalf("error message of %d bytes echoes the input", len(oe.Message))
			}
			return
		}
		if d.String() != s {
			t.Fatalf("ParseDigest(%q) = %q", s, d)
		}
		if err := d.Validate(); err != nil || !d.Algorithm().Available() {
			t.Fatalf("accepted %q: validate %v, available %v", s, err, d.Algorithm().Available())
		}
		if strings.ContainsAny(d.Encoded(), "/.\\%") {
			t.Fatalf("encoded part of %q could escape a blob path", s)
		}
	})
}

func FuzzParseRegistry(f *testing.F) {
	for _, s := range []struct{ ns, def string }{
		{"", "docker.io"}, {"docker.io", ""}, {"index.docker.io", ""}, {"Registry-1.Docker.IO", ""},
		{"quay.io:443", ""}, {"[::1]:5000", ""}, {"localhost", ""}, {"127.0.0.1:5000", ""},
		{"a..b", ""}, {"../x", ""}, {"quay.io/../x", ""}, {strings.Repeat("a.", 200) + "io", ""},
		{"", ""}, {"ghcr.io:99999", ""}, {"REGISTRY.INTERNAL", ""}, {"", "Quay.IO:443"},
	} {
		f.Add(s.ns, s.def)
	}
	f.Fuzz(func(t *testing.T, ns, def string) {
		reg, err := ParseRegistry(ns, def)
		if err != nil {
			oe := wantOCIError(t, err, http.StatusBadRequest)
			if oe.Code != CodeNameInvalid {
				t.Fatalf("code %q, want %s", oe.Code, CodeNameInvalid)
			}
			return
		}
		if reg == "" || len(reg) > MaxNameLength || strings.ContainsAny(reg, "/?#@%\\ ") || reg != strings.ToLower(reg) {
			t.Fatalf("ParseRegistry(%q, %q) = %q", ns, def, reg)
		}
		if again, err := ParseRegistry(reg, ""); err != nil || again != reg {
			t.Fatalf("ParseRegistry not idempotent on %q: %q, %v", reg, again, err)
		}
	})
}

func FuzzParseImageName(f *testing.F) {
	for _, s := range []string{
		"nginx", "nginx:1.27", "library/nginx@" + fuzzDigest, "docker.io/library/nginx:1.27@" + fuzzDigest,
		"index.docker.io/foo/bar", "registry-1.docker.io/foo", "localhost:5000/a/b:c", "[::1]:5000/x",
		"quay.io/org/app:v1", "Upper/case", "a//b", "../x", strings.Repeat("a/", 200) + "b", "sha256:" + strings.Repeat("0", 64),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseImageName(s)
		if err != nil {
			return
		}
		// No length bound here: normalisation (docker.io/library/) may take
		// a 255-byte name past 255; such a store name is never requestable,
		// since requests are bounded, which is harmless.
		checkRepository(t, r)
		if r.Registry != NormalizeRegistry(r.Registry) {
			t.Fatalf("registry %q of %q not normalised", r.Registry, s)
		}
		if r.Digest != "" {
			if err := r.Digest.Validate(); err != nil {
				t.Fatalf("digest of %q: %v", s, err)
			}
		}
		// Round trip: the canonical string parses to the same reference.
		again, err := ParseImageName(r.String())
		if err != nil || again != r {
			t.Fatalf("round trip of %q via %q: %+v, %v; want %+v", s, r.String(), again, err, r)
		}
		// And a registry request for the same name agrees on the repository,
		// so tag keys advertised from store names match requests.
		if len(r.Name()) <= MaxNameLength {
			nr, err := NewReference(r.Registry, r.Repository)
			if err != nil || nr.Name() != r.Name() {
				t.Fatalf("request name for %q is %q, %v; store name is %q", s, nr.Name(), err, r.Name())
			}
		}
	})
}

func FuzzDetectManifestMediaType(f *testing.F) {
	for _, s := range []string{
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{},"layers":[]}`,
		`{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}`,
		`{"schemaVersion":2,"manifests":[{}]}`, `{"schemaVersion":2,"config":{},"layers":[]}`,
		`{"schemaVersion":1,"fsLayers":[]}`, `{"schemaVersion":2,"mediaType":"text/html"}`, `{"schemaVersion":2}`,
		`{"schemaVersion":2,"manifests":null,"config":null}`, `[]`, `null`, ``, `{"schemaVersion":"2"}`,
		`{"schemaVersion":2,"schemaVersion":3,"manifests":[]}`,
	} {
		f.Add([]byte(s))
	}
	known := map[string]bool{
		"": true, ocispec.MediaTypeImageIndex: true, ocispec.MediaTypeImageManifest: true,
		MediaTypeDockerManifestList: true, MediaTypeDockerManifest: true,
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		mt := DetectManifestMediaType(b)
		if !known[mt] {
			t.Fatalf("unknown media type %q", mt)
		}
		if mt == "" {
			return
		}
		if !json.Valid(b) {
			t.Fatalf("media type %q detected in invalid JSON", mt)
		}
		if DetectManifestMediaType(b) != mt {
			t.Fatal("not deterministic")
		}
	})
}
