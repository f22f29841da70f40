package oci

import (
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Media types of manifests and indexes.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	MediaTypeOctetStream        = "application/octet-stream"
)

// ManifestAccept is the Accept list sluice sends when fetching manifests.
var ManifestAccept = []string{
	ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifestList, MediaTypeDockerManifest,
}

// DetectManifestMediaType returns the media type of a manifest or index
// from its JSON: the mediaType field when present, else inferred from its
// shape ("manifests" → index, "config"+"layers" → manifest). It returns ""
// when b is not a manifest or index.
func DetectManifestMediaType(b []byte) string {
	var m struct {
		SchemaVersion int               `json:"schemaVersion"`
		MediaType     string            `json:"mediaType"`
		Manifests     []json.RawMessage `json:"manifests"`
		Config        json.RawMessage   `json:"config"`
		Layers        json.RawMessage   `json:"layers"`
	}
	if err := json.Unmarshal(b, &m); err != nil || m.SchemaVersion != 2 {
		return ""
	}
	switch m.MediaType {
	case ocispec.MediaTypeImageIndex, ocispec.MediaTypeImageManifest,
		MediaTypeDockerManifestList, MediaTypeDockerManifest:
		return m.MediaType
	case "":
	default:
		return ""
	}
	switch {
	case m.Manifests != nil:
		return ocispec.MediaTypeImageIndex
	case m.Config != nil:
		return ocispec.MediaTypeImageManifest
	}
	return ""
}
