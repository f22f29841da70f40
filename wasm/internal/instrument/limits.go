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
	MaxModuleBytes = 64 << 20
	MaxTypes       = 1_000_000
	MaxParams      = 1_000 // and results, per function type
	MaxImports     = 100_000
	// MaxFunctions: wazero compiles ~40,000 functions a second and keeps
	// per-function state in every instance (990,000 empty functions, a
	// 4 MB module, took 27 s and 1.3 GB to load); a 6 MB Go guest has
	// ~4,400.
	MaxFunctions         = 100_000 // imported and defined
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
	// MaxCompileCost bounds the sum over functions of the square of a
	// function's control instructions (block, loop, if, else, end, br,
	// br_if, and br_table counted once per label): wazero's optimising
	// compiler walks dominator chains per basic block, quadratic in a
	// function's blocks, and cannot be interrupted. 100,000 nested blocks
	// (300 KB) took minutes, 2.5 million (7.5 MB) or a br_table of 7
	// million labels over 10 minutes. Go guests of 3–6 MB cost 0.5–2×10⁸
	// (at most ~3,800 in one function); a module at this bound compiles
	// in ~5 s.
	MaxCompileCost = 1 << 32
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
	// DefineImportedMemory turns an imported memory into one the module
	// defines, with the same limits (and the same index, 0), so that
	// each instance owns its memory under the runtime's page cap. OPA's
	// compiler emits modules that import env.memory.
	DefineImportedMemory bool
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
