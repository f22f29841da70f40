package mirror

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"
)

// watchdog cancels a peer response that makes too little progress: fewer
// than minProgress bytes in an idle timeout of reading (a hung or stopped
// peer, or one trickling a few bytes at a time so that it never goes
// quiet), so the stream resumes elsewhere, and releases the request when
// closed.
type watchdog struct {
	io.ReadCloser
	cancel context.CancelFunc
	timer  *time.Timer
	idle   time.Duration
	got    int64         // bytes read since the window began
	spent  time.Duration // time spent reading since the window began
	fired  atomic.Bool   // the timer cut the peer off: its read errors are errTooSlow
}

// errTooSlow marks a read ended by the watchdog: the peer delivered too
// little per idle timeout (stalled or trickling).
var errTooSlow = errors.New("peer delivered too little per idle timeout")

// minProgress is what a peer must deliver per idle timeout spent reading
// (256 KiB per 5 s by default: a fifth of registry.MinTransferRate, the
// slowest a whole transfer may go). A peer that trickles below it holds
// a transfer, or the head of a multi-peer window, until the transfer
// budget (an hour for 1 GiB) unless it is cut off here.
const minProgress = 256 << 10

func newWatchdog(rc io.ReadCloser, cancel context.CancelFunc, idle time.Duration) *watchdog {
	w := &watchdog{ReadCloser: rc, cancel: cancel, idle: idle}
	w.timer = time.AfterFunc(idle, func() {
		w.fired.Store(true)
		cancel()
	})
	return w
}

// Read times only the read itself: time spent writing to a slow client
// between reads is not blamed on the peer.
func (w *watchdog) Read(p []byte) (int, error) {
	w.timer.Reset(w.idle - w.spent)
	start := time.Now()
	n, err := w.ReadCloser.Read(p)
	w.timer.Stop()
	if w.got += int64(n); w.got >= minProgress {
		w.got, w.spent = 0, 0
	} else {
		w.spent += time.Since(start)
	}
	if err != nil && w.fired.Load() {
		err = fmt.Errorf("%w: %w", errTooSlow, err)
	}
	return n, err
}

func (w *watchdog) Close() error {
	w.timer.Stop()
	err := w.ReadCloser.Close()
	w.cancel()
	return err
}
