package hostile

import (
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
)

var (
	s400 = []int{400}
	s404 = []int{404}
	s405 = []int{405}
	s416 = []int{416}
	// Refusals of content that exists but may not be shared.
	s403or404 = []int{403, 404}
	// net/http refuses what it cannot parse before sluice sees it.
	sParse = []int{400, 431}
)

// hostileCases returns the request cases; layer is a blob the node holds.
func hostileCases(layer digest.Digest, size int64, private digest.Digest) []hcase {
	missing := digest.FromString("not on this node")
	hex64 := missing.Encoded()
	L := layer.String()
	get := func(target string, headers ...string) string { return request("GET", target, headers...) }
	blob := func(ref string) string { return "/v2/library/hostile/blobs/" + ref + "?ns=docker.io" }
	man := func(ref string) string { return "/v2/library/hostile/manifests/" + ref + "?ns=docker.io" }
	rng := func(v string) string { return get(blob(L), "Range: "+v) }

	cases := []hcase{
		// Traversal in names, references and ns, plain and encoded.
		{name: "traversal name", payload: get("/v2/../../etc/passwd/manifests/latest"), status: s400, code: "NAME_INVALID"},
		{name: "traversal encoded dots", payload: get("/v2/%2e%2e/%2e%2e/etc/manifests/latest"), status: s400, code: "NAME_INVALID"},
		{name: "traversal encoded slash", payload: get("/v2/library/..%2f..%2fhostile/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "traversal fully encoded", payload: get("/v2/%2e%2e%2f%2e%2e%2fetc%2fshadow/blobs/" + L), status: s400, code: "NAME_INVALID"},
		{name: "traversal in digest", payload: get(blob("sha256:..%2f..%2f..%2fetc%2fpasswd")), status: s400, code: "DIGEST_INVALID"},
		{name: "traversal in tag", payload: get(man("..%2f..%2f1.0")), status: s400, code: "MANIFEST_INVALID"},
		{name: "dot segment", payload: get("/v2/library/./hostile/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "empty segment", payload: get("/v2//library/hostile/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "backslash", payload: get(`/v2/library\hostile/manifests/1.0`), status: append(s400, sParse...), plain: true},
		{name: "encoded NUL", payload: get("/v2/library/hostile%00/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "double encoded", payload: get("/v2/%252e%252e/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "uppercase name", payload: get("/v2/Library/Hostile/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "ns traversal", payload: get("/v2/library/hostile/manifests/1.0?ns=../../etc"), status: s400, code: "NAME_INVALID"},
		{name: "ns with path", payload: get("/v2/library/hostile/manifests/1.0?ns=quay.io%2f..%2fdocker.io"), status: s400, code: "NAME_INVALID"},
		{name: "ns with userinfo", payload: get("/v2/library/hostile/manifests/1.0?ns=user%40evil.example"), status: s400, code: "NAME_INVALID"},
		// A port over 65535 passes the reference grammar (distribution/reference
		// does not bound it); no such registry is mirrored, so it is a 404.
		{name: "ns bad port", payload: get("/v2/library/hostile/manifests/1.0?ns=docker.io:99999999"), status: []int{400, 404}},

		// Absurd lengths.
		{name: "name 300", payload: get("/v2/" + strings.Repeat("a", 300) + "/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "name 60KiB", payload: get("/v2/" + strings.Repeat("ab/", 20<<10) + "x/manifests/1.0"), status: s400, code: "NAME_INVALID"},
		{name: "request line over MaxHeaderBytes", payload: get("/v2/" + strings.Repeat("a", 100<<10) + "/manifests/1.0"), status: sParse, plain: true, closed: true},
		{name: "tag 129", payload: get(man(strings.Repeat("t", 129))), status: s400, code: "MANIFEST_INVALID"},
		{name: "tag 10KiB", payload: get(man(strings.Repeat("t", 10<<10))), status: s400, code: "MANIFEST_INVALID"},
		{name: "digest 10KiB", payload: get(blob("sha256:" + strings.Repeat("0", 10<<10))), status: s400, code: "DIGEST_INVALID"},
		{name: "query 50KiB", payload: get("/v2/library/missing/manifests/1.0?ns=docker.io&junk=" + strings.Repeat("q", 50<<10)), status: s404, code: "MANIFEST_UNKNOWN"},
		{name: "many query params", payload: get("/v2/library/missing/manifests/1.0?ns=docker.io" + strings.Repeat("&a=b", 5000)), status: s404, code: "MANIFEST_UNKNOWN"},
		{name: "ns 10KiB", payload: get("/v2/library/hostile/manifests/1.0?ns=" + strings.Repeat("a", 10<<10) + ".io"), status: s400, code: "NAME_INVALID"},
		{name: "header value 60KiB", payload: get("/v2/library/missing/manifests/1.0", "X-Junk: "+strings.Repeat("h", 60<<10)), status: s404, code: "MANIFEST_UNKNOWN"},
		{name: "header over MaxHeaderBytes", payload: get("/v2/", "X-Junk: "+strings.Repeat("h", 200<<10)), status: sParse, plain: true, closed: true},
		{name: "2000 headers", payload: get("/v2/", manyHeaders(2000)...), status: sParse, plain: true, closed: true},
		{name: "Range 10KiB", payload: rng("bytes=" + strings.Repeat("0", 10<<10) + "-"), status: s416, code: "RANGE_INVALID"},
		{name: "peer header 10KiB on a missing blob", payload: get(blob(missing.String()), "Sluice-Peer: "+strings.Repeat("p", 10<<10)), status: s404, code: "BLOB_UNKNOWN"},
		{name: "Accept 60KiB", payload: get(man("nothere"), "Accept: "+strings.Repeat("application/x, ", 4<<10)), status: s404, code: "MANIFEST_UNKNOWN"},

		// Invalid and unknown-algorithm digests.
		{name: "digest short", payload: get(blob("sha256:abc")), status: s400, code: "DIGEST_INVALID"},
		{name: "digest 63 hex", payload: get(blob("sha256:" + hex64[:63])), status: s400, code: "DIGEST_INVALID"},
		{name: "digest 65 hex", payload: get(blob("sha256:" + hex64 + "0")), status: s400, code: "DIGEST_INVALID"},
		{name: "digest uppercase hex", payload: get(blob("sha256:" + strings.ToUpper(hex64))), status: s400, code: "DIGEST_INVALID"},
		{name: "digest uppercase algorithm", payload: get(blob("SHA256:" + hex64)), status: s400, code: "DIGEST_INVALID"},
		{name: "digest empty", payload: get(blob("sha256:")), status: s400, code: "DIGEST_INVALID"},
		{name: "digest no algorithm", payload: get(blob(hex64)), status: s400, code: "DIGEST_INVALID"},
		{name: "digest md5", payload: get(blob("md5:d41d8cd98f00b204e9800998ecf8427e")), status: s400, code: "DIGEST_INVALID"},
		{name: "digest sha1", payload: get(blob("sha1:da39a3ee5e6b4b0d3255bfef95601890afd80709")), status: s400, code: "DIGEST_INVALID"},
		{name: "digest blake3", payload: get(blob("blake3:" + hex64)), status: s400, code: "DIGEST_INVALID"},
		{name: "digest with suffix alg", payload: get(blob("sha256+b64:" + hex64)), status: s400, code: "DIGEST_INVALID"},
		{name: "digest non-hex", payload: get(blob("sha256:" + strings.Repeat("z", 64))), status: s400, code: "DIGEST_INVALID"},
		{name: "manifest digest invalid", payload: get(man("sha256:nothex")), status: s400, code: "DIGEST_INVALID"},
		{name: "HEAD invalid digest", payload: request("HEAD", blob("sha256:abc")), status: s400},
		{name: "sha512 missing", payload: get(blob("sha512:" + strings.Repeat("ab", 64))), status: s404, code: "BLOB_UNKNOWN"},
		{name: "sha256 missing", payload: get(blob(missing.String())), status: s404, code: "BLOB_UNKNOWN"},

		// Ranges: several, negative, overflowing, outside the content.
		{name: "multi-range", payload: rng("bytes=0-1,5-6"), status: s416, code: "RANGE_INVALID"},
		{name: "multi-range 1000", payload: rng("bytes=" + strings.TrimSuffix(strings.Repeat("0-0,", 1000), ",")), status: s416, code: "RANGE_INVALID"},
		{name: "negative start", payload: rng("bytes=-1-5"), status: s416, code: "RANGE_INVALID"},
		{name: "end before start", payload: rng("bytes=5-1"), status: s416, code: "RANGE_INVALID"},
		{name: "start overflow", payload: rng("bytes=99999999999999999999-"), status: s416, code: "RANGE_INVALID"},
		{name: "end overflow", payload: rng("bytes=0-99999999999999999999"), status: s416, code: "RANGE_INVALID"},
		{name: "max int64 start", payload: rng("bytes=9223372036854775807-9223372036854775807"), status: s416, code: "RANGE_INVALID"},
		{name: "start at size", payload: rng(fmt.Sprintf("bytes=%d-", size)), status: s416, code: "RANGE_INVALID"},
		{name: "empty suffix", payload: rng("bytes=-0"), status: s416, code: "RANGE_INVALID"},
		{name: "not a number", payload: rng("bytes=abc-def"), status: s416, code: "RANGE_INVALID"},
		{name: "plus sign", payload: rng("bytes=+1-2"), status: s416, code: "RANGE_INVALID"},
		{name: "other unit", payload: rng("items=0-1"), status: s416, code: "RANGE_INVALID"},
		{name: "no dash", payload: rng("bytes=5"), status: s416, code: "RANGE_INVALID"},
		{name: "HEAD multi-range", payload: request("HEAD", blob(L), "Range: bytes=0-1,2-3"), status: s416},

		// Write methods and endpoints a read-only mirror does not have.
		{name: "PUT manifest", payload: request("PUT", man("1.0"), "Content-Length: 2") + "{}", status: s405, code: "UNSUPPORTED"},
		{name: "POST upload", payload: request("POST", "/v2/library/hostile/blobs/uploads/", "Content-Length: 0"), status: s405, code: "UNSUPPORTED"},
		{name: "DELETE manifest", payload: request("DELETE", man("1.0")), status: s405, code: "UNSUPPORTED"},
		{name: "DELETE blob", payload: request("DELETE", blob(L)), status: s405, code: "UNSUPPORTED"},
		{name: "PATCH upload", payload: request("PATCH", "/v2/library/hostile/blobs/uploads/x", "Content-Length: 0"), status: s405, code: "UNSUPPORTED"},
		{name: "OPTIONS", payload: request("OPTIONS", man("1.0")), status: s405, code: "UNSUPPORTED"},
		{name: "unknown method", payload: request("FROB", man("1.0")), status: s405, code: "UNSUPPORTED"},
		{name: "GET upload", payload: get("/v2/library/hostile/blobs/uploads/x"), status: s405, code: "UNSUPPORTED"},
		{name: "catalog", payload: get("/v2/_catalog"), status: s405, code: "UNSUPPORTED"},
		{name: "tags list", payload: get("/v2/library/hostile/tags/list"), status: s405, code: "UNSUPPORTED"},
		{name: "referrers", payload: get("/v2/library/hostile/referrers/" + L), status: s405, code: "UNSUPPORTED"},

		// A registry that is not mirrored (registries.yaml lists docker.io).
		{name: "unmirrored manifest", payload: get("/v2/library/hostile/manifests/1.0?ns=quay.io"), status: s404, code: "MANIFEST_UNKNOWN"},
		{name: "unmirrored manifest ghcr", payload: get("/v2/org/app/manifests/v1?ns=ghcr.io"), status: s404, code: "MANIFEST_UNKNOWN"},
		{name: "unmirrored missing blob", payload: get("/v2/org/app/blobs/" + missing.String() + "?ns=registry.k8s.io"), status: s404, code: "BLOB_UNKNOWN"},
		// The held blob is known under docker.io, which is shared: serve is
		// judged on what the node knows about the content, not on the
		// registry the request names (issue 10 item 3), so naming an
		// unshared registry neither hides nor unlocks it.
		{name: "private held blob under a shared name", payload: get("/v2/library/hostile/blobs/" + private.String() + "?ns=docker.io"), status: s403or404},
		{name: "private held blob under its own name", payload: get("/v2/private/app/blobs/" + private.String() + "?ns=quay.io"), status: s403or404},
		{name: "unmirrored name for a shared held blob", payload: get("/v2/library/hostile/blobs/" + L + "?ns=quay.io"), status: []int{200}, plain: true},
		{name: "unmirrored with port", payload: get("/v2/x/manifests/v1?ns=localhost:5000"), status: s404, code: "MANIFEST_UNKNOWN"},

		// Paths outside the API and requests net/http cannot parse.
		{name: "root", payload: get("/"), status: s404, code: "NAME_UNKNOWN"},
		{name: "v3", payload: get("/v3/"), status: s404, code: "NAME_UNKNOWN"},
		{name: "unknown v2 path", payload: get("/v2/library/hostile"), status: s404, code: "NAME_UNKNOWN"},
		{name: "garbage bytes", payload: "\x00\x01\x02\xff\r\n\r\n", status: sParse, plain: true, closed: true},
		{name: "header without colon", payload: "GET /v2/ HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n", status: sParse, plain: true, closed: true},
		{name: "control char in header", payload: "GET /v2/ HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", status: sParse, plain: true, closed: true},
		{name: "two Content-Length", payload: "GET /v2/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", status: sParse, plain: true, closed: true},
		{name: "bad chunked", payload: "PUT /v2/a/manifests/1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", status: s405, code: "UNSUPPORTED", closed: true},
	}
	return cases
}

func manyHeaders(n int) []string {
	h := make([]string, n)
	for i := range h {
		h[i] = fmt.Sprintf("X-H%d: %s", i, strings.Repeat("v", 40))
	}
	return h
}
