package mirror

import "sync/atomic"

// defaultRangeMemory bounds the chunk buffers of all multi-peer transfers
// together (WithMultiPeerMemory): 32 chunks, six transfers with a full
// window at --peer-fetch-parallel 3. Without a bound, the 64 transfers
// --max-peer-fetches allows would hold 64 × 5 × 4 MiB = 1.25 GiB while
// their clients read slowly, past the chart's 512 MiB limit.
const defaultRangeMemory = 128 << 20

// rangeMemory bounds the chunk buffers multi-peer transfers hold, node
// wide: a transfer reserves its window's worth at its start (reserve) and
// never cuts more chunks than that at once, so the buffers held are at
// most the reservations.
type rangeMemory struct {
	slots       chan struct{}
	inUse, peak atomic.Int64 // buffers held now and at most (tests)
}

func newRangeMemory(chunks int) *rangeMemory {
	return &rangeMemory{slots: make(chan struct{}, max(chunks, 0))}
}

// reserve takes up to want chunk slots, without waiting, and returns how
// many it took.
func (r *rangeMemory) reserve(want int) int {
	for n := 0; n < want; n++ {
		select {
		case r.slots <- struct{}{}:
		default:
			return n
		}
	}
	return want
}

// release gives n reserved slots back.
func (r *rangeMemory) release(n int) {
	for range n {
		<-r.slots
	}
}

// got counts one buffer taken.
func (r *rangeMemory) got() {
	n := r.inUse.Add(1)
	for {
		p := r.peak.Load()
		if n <= p || r.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

// put counts one buffer given back.
func (r *rangeMemory) put() { r.inUse.Add(-1) }
