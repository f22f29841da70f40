package policy

// Test hooks for package policy_test.

// ProjectionOf lists the input fields in the cache key of s ("*": all).
func ProjectionOf(s *Set) string { return s.rev.Load().proj.String() }

// CacheLen is the number of cached decisions of s.
func CacheLen(s *Set) int { return s.rev.Load().cache.len() }

// CacheKey is the whole-input cache key of in.
func CacheKey(in Input) []byte { return appendKey(nil, &in) }
