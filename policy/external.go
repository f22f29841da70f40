package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
)

// External is policy from outside the --policy paths: the bundles an OPA
// bundle service delivered (package policy/opaplugins). It compiles into
// a Rego source of its own, after the sources of the paths: the node's
// decision is the AND of both, so a downloaded bundle can tighten the
// local policy but never widen it, and the other way round.
type External struct {
	// Revision describes what is loaded, e.g. "authz=v3" (status page,
	// logs). The revision of the Set changes with the content, not with
	// this label.
	Revision string
	// Modules maps a file name (used in error locations, e.g.
	// "authz/sluice/resolve.rego") to its Rego source.
	Modules map[string][]byte
	// Data is the base document of the modules.
	Data map[string]any
}

// WithExternal gives the Set a source set by SetExternal, named name
// (e.g. "bundles"). Until the first SetExternal succeeds it denies every
// decision, saying it waits for name: a node never decides without the
// policy it was told to fetch.
func WithExternal(name string) Option { return func(o *options) { o.external = name } }

// external is the state of the WithExternal source. cur changes under
// Set.reload only; the status page reads it at any time.
type external struct {
	name    string
	cur     atomic.Pointer[extLoaded] // nil: not loaded yet
	serving atomic.Pointer[string]    // Revision of cur once its revision serves
	lastErr atomic.Pointer[errBox]
}

type extLoaded struct {
	src      *regoSource
	id       string // hash of the content
	revision string // External.Revision
}

func newExternal(name string) *external { return &external{name: name} }

// revisionID combines the revision of the paths with the external
// content. Without an external source it is the paths' revision.
func (e *external) revisionID(paths string) string {
	if e == nil {
		return paths
	}
	id := ""
	if cur := e.cur.Load(); cur != nil {
		id = cur.id
	}
	h := sha256.Sum256([]byte(paths + "\x00" + e.name + "\x00" + id))
	return hex.EncodeToString(h[:])[:16]
}

// addTo appends the external source (or the waiting one) to rev. The
// decision cache key widens to what either Rego source reads.
func (e *external) addTo(rev *revision, m *metrics) {
	if e == nil {
		return
	}
	cur := e.cur.Load()
	if cur == nil {
		rev.sources = append(rev.sources, source{name: e.name, engine: waiting{e.name}, m: m.forEngine(EngineRego)})
		rev.proj = nil
		return
	}
	rev.sources = append(rev.sources, source{name: e.name, engine: cur.src, m: m.forEngine(EngineRego)})
	if nd := cur.src.eng.Nondeterministic(); len(nd) > 0 {
		rev.nondet = append(rev.nondet, nd...)
		rev.cache = nil
	}
	rev.proj = rev.proj.union(newProjection(cur.src.eng.InputReads()))
}

func (e *external) lastError() error {
	if e == nil {
		return nil
	}
	if b := e.lastErr.Load(); b != nil {
		return b.err
	}
	return nil
}

// union is the projection that keys every field either keys; nil (the
// whole input) when either is nil.
func (pr *projection) union(o *projection) *projection {
	if pr == nil || o == nil {
		return nil
	}
	u := &projection{value: pr.value | o.value}
	u.presence = (pr.presence | o.presence) &^ u.value
	if u.value == fAll {
		return nil
	}
	return u
}

// waiting is the external source before its first load: a deny.
type waiting struct{ name string }

func (w waiting) Decide(context.Context, Action, Input) (Decision, error) {
	return Decision{Allow: false, Reasons: []string{"policy source " + w.name + " is not loaded yet"}}, nil
}

// SetExternal compiles ext and, when it compiles and defines every
// action, makes it the external source of a new revision (the paths as
// last read are not read again). Otherwise the error (coded, with
// file:line) is recorded for LastError and the status page, counted as a
// failed reload and returned; the source loaded before keeps deciding.
// It needs WithExternal.
func (s *Set) SetExternal(ctx context.Context, ext External) error {
	s.reload.Lock()
	defer s.reload.Unlock()
	if s.closed {
		return &Error{Code: CodeClosed, Message: "the policy set is closed"}
	}
	if s.ext == nil {
		return &Error{Code: CodeLoad, Message: "the policy set has no external source (WithExternal)"}
	}
	err := s.setExternal(ctx, ext)
	if err != nil {
		s.m.reloads.WithLabelValues("error").Inc()
		s.ext.lastErr.Store(&errBox{err})
		s.log.ErrorContext(ctx, "policy from "+s.ext.name+" refused, keeping the last good policy",
			"error", err, "code", ErrorCode(err), "revision", s.rev.Load().id, "refused", ext.Revision)
		return err
	}
	s.ext.lastErr.Store(nil)
	return nil
}

func (s *Set) setExternal(ctx context.Context, ext External) error {
	snap := &snapshot{modules: map[string]*ast.Module{}, data: ext.Data, hasRego: true}
	if snap.data == nil {
		snap.data = map[string]any{}
	}
	r := &reader{o: &s.o, s: snap, h: sha256.New()}
	for _, name := range slices.Sorted(maps.Keys(ext.Modules)) {
		r.hashFile(name, ext.Modules[name])
		if err := r.addModule(name, ext.Modules[name]); err != nil {
			return err
		}
	}
	if err := definesEveryAction(snap.modules); err != nil {
		return err
	}
	src, err := newRegoSource(ctx, snap)
	if err != nil {
		return err
	}
	data, err := json.Marshal(snap.data) // map keys sorted: a stable hash
	if err != nil {
		return &Error{Code: CodeLoad, Message: "policy data of " + s.ext.name, Err: err}
	}
	r.hashFile("data", data)
	old := s.rev.Load()
	prev := s.ext.cur.Swap(&extLoaded{src: src, id: hex.EncodeToString(r.h.Sum(nil)), revision: ext.Revision})
	rev, err := s.buildFrom(ctx, old.snap, old)
	if err != nil {
		s.ext.cur.Store(prev)
		return err
	}
	if rev == old {
		s.ext.serving.Store(&ext.Revision)
		s.m.reloads.WithLabelValues("unchanged").Inc()
		return nil
	}
	s.rev.Store(rev)
	s.ext.serving.Store(&ext.Revision)
	s.m.reloads.WithLabelValues("success").Inc()
	s.log.InfoContext(ctx, "policy from "+s.ext.name+" loaded", "revision", rev.id, "previous", old.id, "bundles", ext.Revision)
	old.retire()
	return nil
}

// SetExternalError records an error of fetching the external source (a
// download or signature failure: nothing reached SetExternal) for
// LastError and the status page; nil clears it. Decisions are unchanged.
func (s *Set) SetExternalError(err error) {
	if s.ext == nil {
		return
	}
	if err == nil {
		s.ext.lastErr.Store(nil)
		return
	}
	s.ext.lastErr.Store(&errBox{err})
}

// definesEveryAction refuses a module set that leaves an action
// undefined: that action would be an engine error on every decision
// (a deny, or an allow under fail-open) rather than a refused load.
func definesEveryAction(mods map[string]*ast.Module) error {
	defined := map[string]bool{}
	for _, m := range mods {
		p := m.Package.Path.String()
		a, ok := strings.CutPrefix(p, "data.sluice.")
		if !ok {
			continue
		}
		for _, r := range m.Rules {
			if ref := r.Head.Ref(); len(ref) > 0 {
				if n := ref[0].Value.String(); n == "allow" || n == "deny" {
					defined[a] = true
				}
			}
		}
	}
	var missing []string
	for _, a := range Actions {
		if !defined[string(a)] {
			missing = append(missing, "sluice."+string(a))
		}
	}
	if len(missing) > 0 {
		return &Error{Code: CodeCompile, Message: fmt.Sprintf(
			"the policy defines no allow or deny rule in package %s: every action needs one (allow := true for no opinion)",
			strings.Join(missing, ", "))}
	}
	return nil
}

// info fills the status of the external source into si.
func (e *external) info(si *SourceInfo) {
	if e == nil || si.Name != e.name {
		return
	}
	si.Revision = "(not loaded yet)"
	if r := e.serving.Load(); r != nil {
		si.Revision = *r
	}
	if err := e.lastError(); err != nil {
		si.LastError = err.Error()
	}
}
