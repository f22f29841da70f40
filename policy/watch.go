package policy

import (
	"context"
	"fmt"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Watch reloads the policy when a file under its paths changes, until ctx
// is done. Changes are debounced; a reload that fails keeps the last good
// revision (see Reload). The shipped default set never changes, so Watch
// then only waits for ctx.
func (s *Set) Watch(ctx context.Context) error {
	if len(s.paths) == 0 {
		<-ctx.Done()
		return nil
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("policy watch: %w", err)
	}
	defer w.Close()
	watched := map[string]bool{}
	addWatches := func() {
		for _, dir := range s.rev.Load().snap.watch {
			if watched[dir] {
				continue
			}
			if err := w.Add(dir); err != nil {
				s.log.WarnContext(ctx, "policy watch: cannot watch directory", "dir", dir, "error", err)
				continue
			}
			watched[dir] = true
		}
	}
	addWatches()

	var timer *time.Timer
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if ev.Op == fsnotify.Chmod {
				continue
			}
			if timer == nil {
				timer = time.NewTimer(s.o.debounce)
			} else {
				timer.Reset(s.o.debounce)
			}
			fire = timer.C
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.WarnContext(ctx, "policy watch error", "error", err)
		case <-fire:
			fire = nil
			// Reload logs and counts its own failure; the last good
			// revision keeps serving.
			_ = s.Reload(ctx)
			addWatches() // new subdirectories
		}
	}
}
