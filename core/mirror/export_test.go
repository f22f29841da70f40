package mirror

// WithoutVerificationForBenchmark switches digest verification of peer
// blobs off. It exists for the A/B in BenchmarkPeerBlob only: it is
// defined in a _test.go file, so no binary can set it.
func WithoutVerificationForBenchmark() Option { return func(m *Mirror) { m.verifyOff = true } }

// UnhealthyForTest reports whether the peer id is remembered as unhealthy.
func (m *Mirror) UnhealthyForTest(id string) bool { return m.health.bad(id) }

// RangeBuffersForTest returns how many multi-peer chunk buffers are held
// now, and the most held at once.
func (m *Mirror) RangeBuffersForTest() (inUse, peak int64) {
	return m.ranges.inUse.Load(), m.ranges.peak.Load()
}
