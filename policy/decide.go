package policy

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"
)

// Decide answers action for in. The action argument wins over in.Action;
// in.Mirrors (when nil) and in.Node (when nil) are filled from SetMirrors
// and WithNode. Every source must allow; any deny wins and reasons are
// concatenated. An engine error is a deny with a reason naming its code
// (an allow with WithFailOpen), logged and counted; Decide itself then
// returns no error. The only error it returns is for an unknown action.
func (s *Set) Decide(ctx context.Context, action Action, in Input) (Decision, error) {
	if !action.Valid() {
		err := &Error{Code: CodeInvalidAction, Message: "unknown action " + string(action)}
		return Decision{Allow: false, Reasons: []string{err.Error()}}, err
	}
	in.Action = action
	if in.Mirrors == nil {
		in.Mirrors = *s.mirrors.Load()
	}
	if in.Node == nil {
		in.Node = s.o.node
	}
	for {
		rev := s.rev.Load()
		if d, ok := s.decide(ctx, rev, action, &in); ok {
			return d, nil
		}
		// rev was retired before this decision pinned it: decide on the
		// revision that replaced it, or deny when Close retired it (an
		// error of its own, not an engine error: fail-open never applies).
		if s.rev.Load() == rev {
			err := &Error{Code: CodeClosed, Message: "the policy set is closed"}
			return Decision{Allow: false, Reasons: []string{err.Error()}}, nil
		}
	}
}

// decide answers from the cache of rev or from its engines, which it pins
// for the evaluation. ok is false, with nothing decided, when rev was
// retired before it could pin them.
func (s *Set) decide(ctx context.Context, rev *revision, action Action, in *Input) (_ Decision, ok bool) {
	ai := actionIndex(action)
	var start time.Time
	if s.o.decisionLog != nil {
		start = time.Now()
	}

	bp := s.bufs.Get().(*[]byte)
	buf := (*bp)[:0]
	// An allowing decision is keyed by what allow reads (dkey), when that
	// is narrower than what the reasons of a refusal read (key): a refusal
	// is cached under both, and a dkey hit that refuses looks up key for
	// its reasons.
	var dkey, key []byte
	if rev.dproj != nil {
		buf = rev.dproj.appendKey(append(buf, 'A'), in)
		dkey = buf
		if e, hit := rev.cache.get(dkey); hit && e.d.Allow {
			d := s.cached(ctx, rev, ai, in, e, start)
			*bp = buf
			s.bufs.Put(bp)
			return d, true
		}
	}
	buf = rev.proj.appendKey(buf, in)
	key = buf[len(dkey):]
	if e, hit := rev.cache.get(key); hit {
		// The cache of a retired revision still answers as that revision
		// would: the decision started before the reload.
		d := s.cached(ctx, rev, ai, in, e, start)
		*bp = buf
		s.bufs.Put(bp)
		return d, true
	}
	if !rev.acquire() {
		*bp = buf
		s.bufs.Put(bp)
		return Decision{}, false
	}
	defer rev.release()
	if rev.cache != nil {
		s.m.cacheMiss.Inc()
	}

	d := Decision{Allow: true}
	results := make([]uint8, len(rev.sources))
	failed, volatile := false, false
	for i := range rev.sources {
		src := &rev.sources[i]
		start := time.Now()
		var sd Decision
		var err error
		if src.volatile != nil {
			var v bool
			sd, v, err = src.volatile.DecideVolatile(ctx, action, *in)
			volatile = volatile || v
		} else {
			sd, err = src.engine.Decide(ctx, action, *in)
		}
		src.m.duration.Observe(time.Since(start).Seconds())
		switch {
		case err != nil:
			failed = true
			results[i] = resultError
			err = engineError(err)
			src.m.errors.Inc()
			s.log.LogAttrs(ctx, slog.LevelError, "policy engine error",
				slog.String("engine", src.name), slog.String("action", string(action)),
				slog.String("code", ErrorCode(err)), slog.Any("error", err),
				slog.Bool("fail_open", s.o.failOpen), slog.String("revision", rev.id))
			if !s.o.failOpen {
				d.Allow = false
				d.Reasons = append(d.Reasons, err.Error())
			}
		case sd.Allow:
			results[i] = resultAllow
			d.Reasons = append(d.Reasons, sd.Reasons...)
		default:
			results[i] = resultDeny
			d.Allow = false
			if len(sd.Reasons) == 0 {
				d.Reasons = append(d.Reasons, "denied by "+src.name)
			}
			d.Reasons = append(d.Reasons, sd.Reasons...)
		}
		src.m.decisions[ai][results[i]].Inc()
	}
	if len(rev.sources) == 0 {
		d = Decision{Allow: false, Reasons: []string{"no policy source"}}
	}
	if !failed && !volatile { // a volatile decision may differ next time
		e := cacheEntry{d: d, results: results}
		switch {
		case dkey == nil:
			rev.cache.put(string(key), e)
		case d.Allow:
			rev.cache.put(string(dkey), e)
		default:
			rev.cache.put(string(dkey), e) // refuses: look up key
			rev.cache.put(string(key), e)
		}
	}
	*bp = buf
	s.bufs.Put(bp)
	if s.o.decisionLog != nil {
		s.emitDecision(ctx, rev, in, d, false, start)
	}
	s.logDecision(ctx, rev, in, d)
	return Decision{Allow: d.Allow, Reasons: slices.Clip(d.Reasons)}, true
}

// cached counts and logs a decision answered from the cache.
func (s *Set) cached(ctx context.Context, rev *revision, ai int, in *Input, e cacheEntry, start time.Time) Decision {
	s.m.cacheHit.Inc()
	for i, r := range e.results {
		rev.sources[i].m.decisions[ai][r].Inc()
	}
	d := e.d
	d.Reasons = slices.Clip(d.Reasons) // appends by the caller copy
	if s.o.decisionLog != nil {
		s.emitDecision(ctx, rev, in, d, true, start)
	}
	s.logDecision(ctx, rev, in, d)
	return d
}

// engineError gives an engine error a code when it has none.
func engineError(err error) error {
	var pe *Error
	if errors.As(err, &pe) {
		return err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return &Error{Code: CodeTimeout, Err: err}
	}
	return &Error{Code: CodeEval, Err: err}
}

// logDecision writes the decision log: one line per decision that denied
// or that lets bytes cross to or from a peer.
func (s *Set) logDecision(ctx context.Context, rev *revision, in *Input, d Decision) {
	if d.Allow && in.Peer == nil {
		return
	}
	if !s.log.Enabled(ctx, slog.LevelInfo) {
		return
	}
	result := "allow"
	if !d.Allow {
		result = "deny"
	}
	attrs := []slog.Attr{
		slog.String("action", string(in.Action)),
		slog.String("reference", referenceString(in.Reference)),
	}
	if in.Peer != nil {
		attrs = append(attrs, slog.String("peer", in.Peer.ID))
	}
	attrs = append(attrs,
		slog.String("result", result),
		slog.Any("reasons", d.Reasons),
		slog.String("revision", rev.id))
	s.log.LogAttrs(ctx, slog.LevelInfo, "policy decision", attrs...)
}

func referenceString(r *Reference) string {
	if r == nil {
		return ""
	}
	s := r.Registry + "/" + r.Repository
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}
