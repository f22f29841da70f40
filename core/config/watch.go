package config

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is how long WatchRegistries waits for a burst of file
// events (an editor's write, a ConfigMap's symlink swap) to settle.
const DefaultDebounce = 250 * time.Millisecond

// WatchRegistries calls fn with the newly loaded registries.yaml each time
// its content changes, until ctx is done. It watches the file's directory,
// so a file replaced by rename (editors, atomic writers, Kubernetes
// ConfigMap volumes) is seen too; events are debounced and a change is
// reported only when the bytes differ from the last ones seen. A file that
// fails to load (or disappears) is reported as an error; the caller keeps
// its last good configuration. The content at the time of the call is the
// baseline and is not reported. debounce <= 0 means DefaultDebounce.
//
// WatchRegistries blocks; it returns nil when ctx is done, or an error if
// the watch cannot be set up.
func WatchRegistries(ctx context.Context, path string, debounce time.Duration, fn func(*Registries, []Warning, error)) error {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	defer w.Close()
	if err := w.Add(filepath.Dir(path)); err != nil {
		return fmt.Errorf("watch %s: %w", path, err)
	}
	last, lastErr := os.ReadFile(path)
	timer := time.NewTimer(debounce)
	if !timer.Stop() {
		<-timer.C
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case _, ok := <-w.Events:
			if !ok {
				return nil
			}
			timer.Reset(debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			fn(nil, nil, fmt.Errorf("watch %s: %w", path, err))
		case <-timer.C:
			cur, err := os.ReadFile(path)
			if err != nil {
				if lastErr != nil && errors.Is(err, fs.ErrNotExist) && errors.Is(lastErr, fs.ErrNotExist) {
					continue
				}
				last, lastErr = nil, err
				fn(nil, nil, fmt.Errorf("read registries file: %w", err))
				continue
			}
			if lastErr == nil && bytes.Equal(cur, last) {
				continue
			}
			last, lastErr = cur, nil
			fn(LoadRegistries(path))
		}
	}
}
