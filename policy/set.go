package policy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Set is the node's policy: the Rego set compiled from every Rego and data
// path, and each Wasm module, combined so that every source must allow.
// It is safe for concurrent use; Reload and Watch swap a new revision in
// atomically while decisions go on.
type Set struct {
	paths   []string
	o       options
	m       *metrics
	log     *slog.Logger
	rev     atomic.Pointer[revision]
	mirrors atomic.Pointer[[]string]
	lastErr atomic.Pointer[errBox]
	ext     *external  // nil: no WithExternal source (external.go)
	reload  sync.Mutex // one reload (or Close) at a time
	closed  bool       // under reload
	bufs    sync.Pool
}

var _ Engine = (*Set)(nil)

type errBox struct{ err error }

type revision struct {
	id      string
	snap    *snapshot
	sources []source
	cache   *cache
	proj    *projection // nil: the whole input is the cache key
	// dproj, when not nil, keys allowing decisions: what allow and deny
	// read, narrower than proj, which adds what only reasons read (see
	// Set.decide).
	dproj  *projection
	nondet []string // non-deterministic builtins the Rego set calls: no cache

	// Decisions in flight pin the revision's engines (acquire, release):
	// a revision replaced by a reload, or by Close, is retired and its
	// engines close when the last decision using them is done, never
	// under one (a closed engine errs, and fail-open would allow).
	refs      atomic.Int64
	retired   atomic.Bool
	closeOnce sync.Once
}

// acquire pins the engines of rev for one decision. It fails once rev is
// retired: the caller then decides on the revision that replaced it.
func (rev *revision) acquire() bool {
	rev.refs.Add(1)
	if rev.retired.Load() {
		rev.release()
		return false
	}
	return true
}

// release unpins the engines; the last release of a retired revision
// closes them.
func (rev *revision) release() {
	if rev.refs.Add(-1) == 0 && rev.retired.Load() {
		rev.close()
	}
}

// retire marks rev replaced; its engines close now when no decision uses
// them, else at the last release. (acquire increments before it reads
// retired and retire stores retired before it reads refs, so one of the
// two sees the other: a decision never runs on a closed engine.)
func (rev *revision) retire() {
	rev.retired.Store(true)
	if rev.refs.Load() == 0 {
		rev.close()
	}
}

func (rev *revision) close() { rev.closeOnce.Do(func() { closeSources(rev.sources) }) }

type source struct {
	name     string // "rego" or the .wasm path
	engine   Engine
	volatile VolatileEngine // engine, when it reports volatile decisions
	m        *engineMetrics
}

// DefaultCacheSize is the decision cache size when WithCacheSize is not given.
const DefaultCacheSize = 4096

// Load reads and compiles the policy paths: directories, .rego files, data
// files (.json, .yaml, .yml), OPA bundles (.tar.gz, verified when a key is
// given) and .wasm modules (opened with WithWasm). All Rego and data
// compile into one OPA policy set; each .wasm is a source of its own. With
// no paths it loads the shipped policies (mirrors + latest).
func Load(ctx context.Context, paths []string, opts ...Option) (*Set, error) {
	s := &Set{paths: slices.Clone(paths)}
	s.o.cacheSize = DefaultCacheSize
	s.o.debounce = 200 * time.Millisecond
	for _, opt := range opts {
		opt(&s.o)
	}
	s.log = s.o.logger
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(s.o.registerer)
	if err != nil {
		return nil, fmt.Errorf("policy metrics: %w", err)
	}
	s.m = m
	wildcard := []string{"*"}
	s.mirrors.Store(&wildcard)
	s.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	if s.o.external != "" {
		s.ext = newExternal(s.o.external)
	}
	rev, err := s.build(ctx, nil)
	if err != nil {
		return nil, err
	}
	s.rev.Store(rev)
	return s, nil
}

// build reads the paths and compiles a new revision. With prev given and
// unchanged inputs it returns prev.
func (s *Set) build(ctx context.Context, prev *revision) (*revision, error) {
	snap, err := readSnapshot(s.paths, &s.o)
	if err != nil {
		return nil, err
	}
	return s.buildFrom(ctx, snap, prev)
}

// buildFrom compiles a new revision of snap and the external source (if
// any). With prev given and unchanged inputs it returns prev.
func (s *Set) buildFrom(ctx context.Context, snap *snapshot, prev *revision) (*revision, error) {
	id := s.ext.revisionID(snap.revision)
	if prev != nil && prev.id == id {
		return prev, nil
	}
	rev := &revision{id: id, snap: snap, cache: newCache(s.o.cacheSize)}
	if snap.hasRego {
		eng, err := newRegoSource(ctx, snap)
		if err != nil {
			return nil, err
		}
		rev.sources = append(rev.sources, source{name: EngineRego, engine: eng, m: s.m.forEngine(EngineRego)})
		if rev.nondet = eng.eng.Nondeterministic(); len(rev.nondet) > 0 {
			// A decision that reads the clock, the network or a random
			// source may change with no change of input: never cache it.
			rev.cache = nil
		}
		if len(snap.wasm) == 0 {
			// A Wasm module may read anything: only a Rego-only set
			// narrows the cache key.
			rev.proj = newProjection(eng.eng.InputReads())
			if dp := newProjection(eng.eng.DecisionReads()); dp != nil && (rev.proj == nil || *dp != *rev.proj) {
				rev.dproj = dp
			}
		}
	}
	for _, w := range snap.wasm {
		eng, err := s.o.wasm(ctx, w.path, w.module, snap.data)
		if err != nil {
			closeSources(rev.sources)
			var pe *Error
			if errors.As(err, &pe) {
				return nil, err
			}
			return nil, &Error{Code: CodeCompile, Location: w.path, Message: "cannot open Wasm policy", Err: err}
		}
		// A guest that reads a clock or random bytes makes that decision
		// uncacheable (VolatileEngine).
		vol, _ := eng.(VolatileEngine)
		rev.sources = append(rev.sources, source{name: w.path, engine: eng, volatile: vol, m: s.m.forEngine(engineName(eng, EngineWasm))})
	}
	s.ext.addTo(rev, s.m)
	if s.ext != nil && rev.dproj != nil {
		// The external source, last, must allow by no more than dproj
		// keys, and give reasons only when it refuses.
		var ext *projection
		if rs, ok := rev.sources[len(rev.sources)-1].engine.(*regoSource); ok {
			ext = newProjection(rs.eng.DecisionReads())
		}
		if rev.dproj = rev.dproj.union(ext); rev.dproj != nil && rev.proj != nil && *rev.dproj == *rev.proj {
			rev.dproj = nil
		}
	}
	return rev, nil
}

func engineName(e Engine, def string) string {
	if n, ok := e.(EngineNamer); ok {
		if name := n.EngineName(); name != "" {
			return name
		}
	}
	return def
}

func closeSources(srcs []source) {
	for _, src := range srcs {
		if c, ok := src.engine.(io.Closer); ok {
			_ = c.Close()
		}
	}
}

// SetMirrors sets the registries put into inputs that carry no mirrors
// (nil): the mirrors of registries.yaml, ["*"] for its wildcard. An empty,
// non-nil list shares nothing. The default is ["*"].
func (s *Set) SetMirrors(mirrors []string) {
	m := slices.Clone(mirrors)
	if m == nil {
		m = []string{}
	}
	s.mirrors.Store(&m)
}

// Revision identifies the policy inputs now serving (a hash of every file
// and option read).
func (s *Set) Revision() string { return s.rev.Load().id }

// LastError is the error of the last reload, nil when it succeeded, joined
// with the last error of the external source (SetExternalError, SetExternal).
func (s *Set) LastError() error {
	var err error
	if b := s.lastErr.Load(); b != nil {
		err = b.err
	}
	switch extErr := s.ext.lastError(); {
	case extErr == nil:
		return err
	case err == nil:
		return extErr
	default:
		return errors.Join(err, extErr)
	}
}

// Close closes the sources that hold resources (Wasm engines), once the
// decisions in flight are done. Decisions after Close deny.
func (s *Set) Close() error {
	s.reload.Lock()
	defer s.reload.Unlock()
	if !s.closed {
		s.closed = true
		s.rev.Load().retire()
	}
	return nil
}

// Reload reads and compiles the paths again. On success the new revision
// replaces the old one atomically; on failure the error (with file:line)
// is logged, counted and returned, and the last good revision keeps
// serving.
func (s *Set) Reload(ctx context.Context) error {
	s.reload.Lock()
	defer s.reload.Unlock()
	if s.closed {
		return &Error{Code: CodeClosed, Message: "the policy set is closed"}
	}
	old := s.rev.Load()
	rev, err := s.build(ctx, old)
	if err != nil {
		s.m.reloads.WithLabelValues("error").Inc()
		s.lastErr.Store(&errBox{err})
		s.log.ErrorContext(ctx, "policy reload failed, keeping the last good policy",
			"error", err, "code", ErrorCode(err), "revision", old.id)
		return err
	}
	s.lastErr.Store(nil)
	if rev == old {
		s.m.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	s.rev.Store(rev)
	s.m.reloads.WithLabelValues("success").Inc()
	s.log.InfoContext(ctx, "policy reloaded", "revision", rev.id, "previous", old.id, "sources", len(rev.sources))
	// Decisions in flight keep the old engines until they are done.
	old.retire()
	return nil
}
