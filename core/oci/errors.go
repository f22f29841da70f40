// Package oci holds the wire vocabulary of the OCI distribution API as
// sluice speaks it: request paths and the ?ns= registry selector, image
// references with docker.io normalisation, media-type detection, and the
// OCI error body written in one place.
package oci

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the distribution spec used by sluice.
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestInvalid = "MANIFEST_INVALID"
	CodeUnsupported     = "UNSUPPORTED"
	CodeDenied          = "DENIED"
	CodeUnauthorized    = "UNAUTHORIZED"
	CodeTooManyRequests = "TOOMANYREQUESTS"
	CodeRangeInvalid    = "RANGE_INVALID" // not in the spec's table; used with 416
	CodeUnavailable     = "UNAVAILABLE"   // 503 when a peer fetch cannot complete
)

// Error is an OCI distribution error with its HTTP status.
type Error struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

// Errorf builds an *Error.
func Errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

type errorBody struct {
	Errors []*Error `json:"errors"`
}

// WriteError writes err as an OCI error body. Errors that are not *Error
// become 500 UNKNOWN; HEAD requests get the status without a body.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var oe *Error
	if !errors.As(err, &oe) {
		oe = &Error{Status: http.StatusInternalServerError, Code: "UNKNOWN", Message: err.Error()}
	}
	b, _ := json.Marshal(errorBody{Errors: []*Error{oe}})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(b)))
	h.Del("Docker-Content-Digest")
	h.Del("Etag")
	if oe.Status != http.StatusRequestedRangeNotSatisfiable {
		h.Del("Content-Range")
	}
	w.WriteHeader(oe.Status)
	if r == nil || r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
}

// ErrorCode returns the first code of an OCI error body, "" when b is not
// one.
func ErrorCode(b []byte) string {
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
