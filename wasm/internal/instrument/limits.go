package instrument

import "errors"

// What a module may declare. The pre-parse refuses a module over any of
// these before wazero decodes it: wazero allocates what a module declares
// before reading it (a 24-byte type section declaring 3×10⁹ parameters
// asks for 3 GB), and a failed allocation is a fatal error that no
// recover catches. Counts are also bounded by the bytes: every entry of a
// vector takes at least one byte, so a count larger than what is left of
// its section is refused as malformed. The numbers follow V8's
// (src/wasm/wasm-limits.h) where V8 has one, and are far above what a Go
// guest declares (a 3 MB Go policy has ~5,000 functions, ~40 locals per
// function at most, one table of ~5,000 entries).
const (
	MaxModuleBytes       = 64 << 20
	MaxTypes             = 1_000_000
	MaxParams            = 1_000 // and results, per function type
	MaxImports           = 100_000
	MaxFunctions         = 1_000_000 // imported and defined
	MaxTables            = 16
	MaxMemories          = 1
	MaxGlobals           = 1_000_000
	MaxExports           = 100_000
	MaxElementSegments   = 100_000
	MaxElementEntries    = 1 << 21 // all element segments together
	MaxDataSegments      = 100_000
	MaxFunctionBodyBytes = 7_654_321
	MaxLocals            = 50_000  // declared locals of one function
	MaxTotalLocals       = 1 << 22 // declared locals of all functions
	MaxNames             = 1 << 21 // entries of the name section
	// MaxTableEntries bounds the maxima of all tables together; every
	// table must declare a maximum.
	MaxTableEntries = 1 << 20
	// TableEntryBytes is what one table entry costs on the host (wazero
	// keeps a table as a []uintptr on the Go heap).
	TableEntryBytes = 8
	// PageBytes is the size of a Wasm memory page.
	PageBytes = 64 << 10
)

// Limits are the per-engine bounds the pre-parse checks beside the
// constants above.
type Limits struct {
	// MemoryBytes caps one instance's linear memory (its minimum) plus its
	// tables (their maxima × TableEntryBytes). Zero: no cap beyond the
	// constants.
	MemoryBytes uint64
}

// Kinds of refusal; every error of Module wraps ErrInvalid and one of
// these.
var (
	// ErrMalformed: the bytes are not a well-formed Wasm 2.0 binary.
	ErrMalformed = errors.New("malformed module")
	// ErrLimit: the module declares more than the host allows.
	ErrLimit = errors.New("module over the host's limits")
	// ErrUnsupported: a well-formed module that uses what this host does
	// not run (instructions beyond Wasm 2.0, reserved export names, code
	// without a memory).
	ErrUnsupported = errors.New("unsupported module")
)
