package opaplugins

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/plugins/bundle"
	"github.com/open-policy-agent/opa/v1/server"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/util"

	"github.com/sluice-oci/sluice/policy"
)

// bundleState is what the listener last did.
type bundleState struct {
	applied    string // activation key handed to the Set
	refusedErr error  // the Set refused the content of applied
	// revisions of the bundles deciding now, for decision-log events
	// (read by any decision's goroutine).
	revisions atomic.Pointer[map[string]server.BundleInfo]
}

// onBundles is the bundle plugin's listener, called after every download
// attempt with the status of every bundle. OPA has verified the
// signature, compiled and activated the bundle into the manager's store
// (a bundle that fails any of that is refused there, and its status
// carries the error); sluice then compiles the store's policy and hands
// it to the Set, which refuses it in turn when it does not compile for
// sluice, keeping the last good source.
func (r *Runtime) onBundles(ctx context.Context, statuses map[string]*bundle.Status) {
	names := slices.Sorted(maps.Keys(statuses))
	var opaErrs []error
	var key strings.Builder
	revs := make(map[string]server.BundleInfo, len(names))
	all := true
	for _, name := range names {
		st := statuses[name]
		if st.Code != "" || st.Message != "" || len(st.Errors) > 0 {
			opaErrs = append(opaErrs, statusError(st))
		}
		if st.LastSuccessfulActivation.IsZero() {
			all = false
			continue
		}
		revs[name] = server.BundleInfo{Revision: st.ActiveRevision}
		fmt.Fprintf(&key, "%s\x00%s\x00%d\x00", name, st.ActiveRevision, st.LastSuccessfulActivation.UnixNano())
	}
	switch {
	case all && key.String() != r.st.applied:
		r.st.applied = key.String()
		r.st.refusedErr = nil
		ext, err := readStore(ctx, r.mgr.Store)
		if err == nil {
			ext.Revision = revisionLabel(revs)
			err = r.set.SetExternal(ctx, ext)
		}
		if err != nil {
			r.st.refusedErr = fmt.Errorf("bundle refused: %w", err)
			r.m.loads.WithLabelValues("refused").Inc()
		} else {
			r.m.loads.WithLabelValues("success").Inc()
			r.st.revisions.Store(&revs)
			r.m.revision.Reset()
			for name, b := range revs {
				r.m.revision.WithLabelValues(name, b.Revision).Set(1)
			}
		}
	case len(opaErrs) > 0:
		r.m.loads.WithLabelValues("error").Inc()
	default:
		r.m.loads.WithLabelValues("unchanged").Inc()
	}
	err := errors.Join(append(opaErrs, r.st.refusedErr)...)
	if len(opaErrs) > 0 {
		r.log.ErrorContext(ctx, "policy bundle load failed, keeping the last good policy", "error", err)
	}
	r.set.SetExternalError(err)
}

func statusError(st *bundle.Status) error {
	msg := st.Message
	for _, e := range st.Errors {
		msg += "; " + e.Error()
	}
	if st.Code != "" {
		msg = st.Code + ": " + msg
	}
	return fmt.Errorf("bundle %s: %s", st.Name, strings.TrimPrefix(msg, "; "))
}

// revisionLabel is "name=revision, …" in name order.
func revisionLabel(revs map[string]server.BundleInfo) string {
	parts := make([]string, 0, len(revs))
	for _, name := range slices.Sorted(maps.Keys(revs)) {
		parts = append(parts, name+"="+revs[name].Revision)
	}
	return strings.Join(parts, ", ")
}

// readStore reads the policy and data OPA activated: every module (its
// id is bundle/path) and the data document without OPA's own
// bookkeeping under data.system.bundles.
func readStore(ctx context.Context, store storage.Store) (policy.External, error) {
	txn, err := store.NewTransaction(ctx)
	if err != nil {
		return policy.External{}, err
	}
	defer store.Abort(ctx, txn)
	ids, err := store.ListPolicies(ctx, txn)
	if err != nil {
		return policy.External{}, err
	}
	ext := policy.External{Modules: make(map[string][]byte, len(ids))}
	for _, id := range ids {
		bs, err := store.GetPolicy(ctx, txn, id)
		if err != nil {
			return policy.External{}, err
		}
		ext.Modules[id] = bs
	}
	doc, err := store.Read(ctx, txn, storage.Path{})
	if err != nil {
		return policy.External{}, err
	}
	if v, ok := doc.(ast.Value); ok {
		if doc, err = ast.JSON(v); err != nil {
			return policy.External{}, err
		}
	}
	// A deep copy: the store's values are its own.
	var data map[string]any
	if err := util.RoundTrip(&doc); err != nil {
		return policy.External{}, err
	}
	data, _ = doc.(map[string]any)
	if sys, ok := data["system"].(map[string]any); ok {
		delete(sys, "bundles")
		if len(sys) == 0 {
			delete(data, "system")
		}
	}
	ext.Data = data
	return ext, nil
}
