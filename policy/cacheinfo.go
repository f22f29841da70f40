package policy

import (
	"strconv"
	"strings"
)

// CacheInfo describes the decision cache of the revision now serving.
type CacheInfo struct {
	// Enabled is false when WithCacheSize(0) was given or the policy
	// calls non-deterministic builtins.
	Enabled bool `json:"enabled"`
	// Size is the configured bound (entries).
	Size int `json:"size"`
	// Entries is the number of decisions cached now.
	Entries int `json:"entries"`
	// Key lists the input fields in the cache key ("*": the whole input;
	// a trailing "?" marks a field of which only presence is keyed).
	Key string `json:"key"`
	// AllowKey, when set, keys decisions that allow: the fields allow
	// and deny read, narrower than Key, which adds what only the reasons
	// of a refusal read (a refusal is looked up by Key).
	AllowKey string `json:"allow_key,omitempty"`
	// Nondeterministic lists the builtins (as OPA marks them: time.now_ns,
	// http.send, rand.intn, …) that turned the cache off: a decision that
	// depends on them may change with no change of input.
	Nondeterministic []string `json:"nondeterministic,omitempty"`
}

// Cache describes the decision cache of the revision now serving.
func (s *Set) Cache() CacheInfo {
	rev := s.rev.Load()
	return CacheInfo{
		Enabled:          rev.cache != nil,
		Size:             s.o.cacheSize,
		Entries:          rev.cache.len(),
		Key:              rev.proj.String(),
		AllowKey:         allowKey(rev.dproj),
		Nondeterministic: append([]string(nil), rev.nondet...),
	}
}

// String is one line for operators, e.g. "on (4096 entries, key: action
// reference.registry mirrors)" or "off: the policy calls non-deterministic
// builtins (time.now_ns); every decision is evaluated".
func (c CacheInfo) String() string {
	switch {
	case len(c.Nondeterministic) > 0:
		return "off: the policy calls non-deterministic builtins (" + strings.Join(c.Nondeterministic, ", ") + "); every decision is evaluated"
	case !c.Enabled:
		return "off (cache size 0)"
	}
	return "on (" + strconv.Itoa(c.Size) + " entries, key: " + c.Key + ")"
}

func allowKey(p *projection) string {
	if p == nil {
		return ""
	}
	return p.String()
}
