package wasm

import (
	"errors"
	"fmt"
)

// Code classifies an engine error. Codes are stable, snake_case, and used
// as the code label of sluice_wasm_errors_total.
type Code string

// Error codes. Load-time codes refuse a module; call-time codes fail one
// decision (the facade denies unless fail-open) and discard the instance.
const (
	// CodeCompile: the bytes are not a valid Wasm module.
	CodeCompile Code = "compile"
	// CodeLimit: the module declares more than the host allows (vector
	// counts, locals, tables without a small maximum, memory plus tables
	// over the cap); refused before compilation.
	CodeLimit Code = "limit"
	// CodeABI: a required export is missing or has the wrong signature, or
	// the module imports something the host does not provide.
	CodeABI Code = "abi"
	// CodeABIVersion: sluice_abi_version returned a version this host does
	// not speak.
	CodeABIVersion Code = "abi_version"
	// CodeInstantiate: instantiation or _initialize failed.
	CodeInstantiate Code = "instantiate"
	// CodeConfigure: sluice_configure refused the data document.
	CodeConfigure Code = "configure"
	// CodeTimeout: the per-call deadline (or the caller's) passed.
	CodeTimeout Code = "timeout"
	// CodeCanceled: the caller canceled the context.
	CodeCanceled Code = "canceled"
	// CodeMemoryLimit: the guest ran out of memory at the page cap.
	CodeMemoryLimit Code = "memory_limit"
	// CodeTrap: the guest trapped (unreachable, bad memory access, …).
	CodeTrap Code = "trap"
	// CodeExit: the guest exited (proc_exit, a Go panic).
	CodeExit Code = "exit"
	// CodeOutOfBounds: a pointer/length from the guest lies outside its memory.
	CodeOutOfBounds Code = "out_of_bounds"
	// CodeBadResult: the decision document is not valid.
	CodeBadResult Code = "bad_result"
	// CodeClosed: the engine was closed.
	CodeClosed Code = "closed"
)

// Error is an engine error: the module, what went wrong (Code) and the
// cause. Use errors.As to read the code.
type Error struct {
	Module string
	Code   Code
	Err    error
}

func (e *Error) Error() string {
	return fmt.Sprintf("wasm policy %s: %s: %v", e.Module, e.Code, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// CodeOf returns the code of the first *Error in err's chain, or "".
func CodeOf(err error) Code {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}
