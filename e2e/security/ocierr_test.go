package security

import "encoding/json"

// ociCode returns the first error code of an OCI error body, "" when b is
// not one.
func ociCode(b []byte) string {
	var e struct {
		Errors []struct {
			Code string `json:"code"`
		} `json:"errors"`
	}
	if json.Unmarshal(b, &e) != nil || len(e.Errors) == 0 {
		return ""
	}
	return e.Errors[0].Code
}
