package security

import "github.com/sluice-oci/sluice/core/oci"

// ociCode returns the first error code of an OCI error body, "" when b is
// not one.
func ociCode(b []byte) string { return oci.ErrorCode(b) }
