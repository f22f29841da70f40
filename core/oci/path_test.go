package oci

import (
	"net/http"
	"net/url"
	"testing"
)

// TestParseRequest_Namespace: the registry a request names is what the
// policy judges, so it is case-folded, and a request naming two registries
// is refused rather than judged on one of them.
func TestParseRequest_Namespace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, query string
		want        string // registry; "" when refused
	}{
		{"absent: default", "", "docker.io"},
		{"lower case", "ns=registry.internal", "registry.internal"},
		{"upper case folds", "ns=REGISTRY.INTERNAL", "registry.internal"},
		{"mixed case with port folds", "ns=Registry.Internal:5000", "registry.internal:5000"},
		{"docker alias in capitals", "ns=Index.Docker.IO", "docker.io"},
		{"two registries", "ns=docker.io&ns=quay.io", ""},
		{"the same registry twice", "ns=docker.io&ns=docker.io", ""},
		{"an empty second ns", "ns=docker.io&ns=", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			u := &url.URL{Path: "/v2/library/alpine/manifests/3.20", RawQuery: tt.query}
			req, err := ParseRequest(http.MethodGet, u, "docker.io")
			if tt.want == "" {
				oe := wantOCIError(t, err, http.StatusBadRequest)
				if oe.Code != CodeNameInvalid {
					t.Fatalf("code %s, want %s", oe.Code, CodeNameInvalid)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if req.Ref.Registry != tt.want {
				t.Fatalf("registry %q, want %q", req.Ref.Registry, tt.want)
			}
		})
	}
}
