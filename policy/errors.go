package policy

import (
	"errors"
	"fmt"
)

// Codes of policy errors. They are stable: operators match on them in logs
// and metrics, and tools match on them with errors.As.
const (
	// CodeCompile: a policy source does not parse or compile. Location
	// names the file and line.
	CodeCompile = "policy_compile_error"
	// CodeLoad: a policy path cannot be read (missing file, bad data file,
	// bundle whose signature does not verify, .wasm without an opener).
	CodeLoad = "policy_load_error"
	// CodeEval: an engine failed while evaluating (builtin error,
	// conflicting rule values, Wasm trap).
	CodeEval = "policy_eval_error"
	// CodeTimeout: the evaluation ran past its context deadline.
	CodeTimeout = "policy_timeout"
	// CodeUndefined: the package of the action defines nothing.
	CodeUndefined = "policy_undefined"
	// CodeInvalidAction: the action is none of advertise, serve, resolve, fetch.
	CodeInvalidAction = "policy_invalid_action"
	// CodeClosed: a decision asked of a Set after Close (a deny, also
	// under fail-open).
	CodeClosed = "policy_closed"
)

// Error is a coded policy error. Use errors.As to read the code:
//
//	var pe *policy.Error
//	if errors.As(err, &pe) && pe.Code == policy.CodeCompile { … }
type Error struct {
	Code string
	// Location is "file:line" when the error points into a source.
	Location string
	Message  string
	Err      error
}

func (e *Error) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Location != "" {
		return fmt.Sprintf("%s: %s: %s", e.Code, e.Location, msg)
	}
	return fmt.Sprintf("%s: %s", e.Code, msg)
}

func (e *Error) Unwrap() error { return e.Err }

// ErrorCode returns the code of the first *Error in err's chain, or "".
func ErrorCode(err error) string {
	var pe *Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
