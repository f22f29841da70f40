package config

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// BackupDir is the directory, inside the hosts directory, where sluice keeps
// the files it replaced and the list of files it manages. containerd never
// reads it (no registry is called ".sluice-backup").
const BackupDir = ".sluice-backup"

const stateFile = "state.json"

// Changes reports what WriteHosts or RestoreHosts did (or, for a dry run,
// would do). Paths are relative to the hosts directory.
type Changes struct {
	Written   []string
	Removed   []string
	BackedUp  []string
	Unchanged []string
	// Diff is a unified diff of every change (always filled).
	Diff     string
	Warnings []Warning
}

// Empty reports whether nothing changed on disk.
func (c Changes) Empty() bool {
	return len(c.Written) == 0 && len(c.Removed) == 0 && len(c.BackedUp) == 0
}

// state is what sluice remembers between runs, in BackupDir/state.json.
type state struct {
	// Managed are the files sluice wrote and owns.
	Managed []string `json:"managed"`
	// Originals are the managed files that existed before sluice first
	// wrote them; their content is in BackupDir/files/<path>.
	Originals []string `json:"originals"`
}

// op is one planned file change.
type op struct {
	rel    string
	data   []byte // new content; nil with remove
	remove bool
	old    []byte // current content, for the diff
}

// WriteHosts writes the hosts.toml of every mirrored registry into
// opts.HostsDir. A file is written only when its content changes, always
// atomically (temporary file, fsync, rename). The first time sluice takes
// over a file that was already there, the file is copied to BackupDir; a
// registry dropped from registries.yaml gets its original back (or its file
// removed when there was none). Nothing else in the directory is touched.
func WriteHosts(ctx context.Context, opts HostsOptions) (Changes, error) {
	if opts.HostsDir == "" {
		return Changes{}, errors.New("write hosts: no hosts directory")
	}
	want, warnings, err := RenderHosts(opts)
	if err != nil {
		return Changes{}, err
	}
	st, err := loadState(opts.HostsDir)
	if err != nil {
		return Changes{}, err
	}
	ch := Changes{Warnings: warnings}
	var ops []op
	var backups []string
	next := state{Managed: slices.Clone(st.Managed), Originals: slices.Clone(st.Originals)}
	for _, rel := range sortedKeys(want) {
		cur, exists, err := readFile(opts.HostsDir, rel)
		if err != nil {
			return Changes{}, err
		}
		if !slices.Contains(st.Managed, rel) {
			next.Managed = append(next.Managed, rel)
			if exists {
				backups = append(backups, rel)
				next.Originals = append(next.Originals, rel)
			}
		}
		if exists && bytes.Equal(cur, want[rel]) {
			ch.Unchanged = append(ch.Unchanged, rel)
			continue
		}
		ops = append(ops, op{rel: rel, data: want[rel], old: cur})
	}
	for _, rel := range st.Managed {
		if _, ok := want[rel]; ok {
			continue
		}
		o, err := giveBack(opts.HostsDir, rel, st)
		if err != nil {
			return Changes{}, err
		}
		ops = append(ops, o)
	}
	final := state{}
	for _, rel := range next.Managed {
		if _, ok := want[rel]; ok {
			final.Managed = append(final.Managed, rel)
			if slices.Contains(next.Originals, rel) {
				final.Originals = append(final.Originals, rel)
			}
		}
	}
	ch.BackedUp = backups
	ch.Diff = diffOps(ops)
	fillChanges(&ch, ops)
	if opts.DryRun || (len(ops) == 0 && len(backups) == 0) {
		return ch, nil
	}
	if err := ctx.Err(); err != nil {
		return Changes{}, err
	}
	// Back up first, and record every file touched in this run before
	// changing any, so that a crash half way can still be restored.
	for _, rel := range backups {
		cur, _, err := readFile(opts.HostsDir, rel)
		if err != nil {
			return Changes{}, err
		}
		if err := writeAtomic(filepath.Join(opts.HostsDir, BackupDir, "files", rel), cur); err != nil {
			return Changes{}, fmt.Errorf("back up %s: %w", rel, err)
		}
	}
	if err := saveState(opts.HostsDir, next); err != nil {
		return Changes{}, err
	}
	if err := applyOps(opts.HostsDir, ops); err != nil {
		return Changes{}, err
	}
	if err := saveState(opts.HostsDir, final); err != nil {
		return Changes{}, err
	}
	return ch, nil
}

// RestoreHosts undoes WriteHosts: every file sluice manages gets its
// original content back, or is removed when there was none, and BackupDir
// is deleted. Files sluice never wrote are not touched.
func RestoreHosts(ctx context.Context, hostsDir string, dryRun bool) (Changes, error) {
	st, err := loadState(hostsDir)
	if err != nil {
		return Changes{}, err
	}
	var ops []op
	for _, rel := range st.Managed {
		o, err := giveBack(hostsDir, rel, st)
		if err != nil {
			return Changes{}, err
		}
		ops = append(ops, o)
	}
	ch := Changes{Diff: diffOps(ops)}
	fillChanges(&ch, ops)
	if dryRun {
		return ch, nil
	}
	if err := ctx.Err(); err != nil {
		return Changes{}, err
	}
	if err := applyOps(hostsDir, ops); err != nil {
		return Changes{}, err
	}
	if err := os.RemoveAll(filepath.Join(hostsDir, BackupDir)); err != nil {
		return Changes{}, fmt.Errorf("remove backup: %w", err)
	}
	return ch, nil
}

// giveBack plans returning a managed file to its state before sluice.
func giveBack(dir, rel string, st state) (op, error) {
	cur, exists, err := readFile(dir, rel)
	if err != nil {
		return op{}, err
	}
	if !slices.Contains(st.Originals, rel) {
		return op{rel: rel, remove: true, old: curIf(cur, exists)}, nil
	}
	orig, ok, err := readFile(filepath.Join(dir, BackupDir, "files"), rel)
	if err != nil {
		return op{}, err
	}
	if !ok {
		return op{}, fmt.Errorf("restore %s: backup copy missing from %s", rel, filepath.Join(dir, BackupDir))
	}
	return op{rel: rel, data: orig, old: curIf(cur, exists)}, nil
}

func curIf(b []byte, ok bool) []byte {
	if !ok {
		return nil
	}
	return b
}

func fillChanges(ch *Changes, ops []op) {
	for _, o := range ops {
		if o.remove {
			ch.Removed = append(ch.Removed, o.rel)
		} else {
			ch.Written = append(ch.Written, o.rel)
		}
	}
}

func applyOps(dir string, ops []op) error {
	for _, o := range ops {
		p := filepath.Join(dir, filepath.FromSlash(o.rel))
		if !o.remove {
			if err := writeAtomic(p, o.data); err != nil {
				return fmt.Errorf("write %s: %w", o.rel, err)
			}
			continue
		}
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", o.rel, err)
		}
		// Remove the host directory too, which fails (as it should) when
		// it holds anything besides sluice's file, such as certificates.
		_ = os.Remove(filepath.Dir(p))
	}
	return nil
}

func readFile(dir, rel string) ([]byte, bool, error) {
	b, err := os.ReadFile(filepath.Join(dir, filepath.FromSlash(rel)))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("read %s: %w", rel, err)
	}
	return b, true, nil
}

// writeAtomic replaces path with data: a temporary file in the same
// directory is written, synced and renamed over path, then the directory is
// synced.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".sluice-*.tmp")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after the rename
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func loadState(dir string) (state, error) {
	var st state
	b, err := os.ReadFile(filepath.Join(dir, BackupDir, stateFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read sluice state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("read sluice state %s: %w", filepath.Join(dir, BackupDir, stateFile), err)
	}
	// configure runs as root on the node: a path that leaves the hosts
	// directory (a tampered or corrupt state file) is never written or
	// removed.
	for _, rel := range slices.Concat(st.Managed, st.Originals) {
		if !filepath.IsLocal(filepath.FromSlash(rel)) {
			return state{}, fmt.Errorf("read sluice state %s: %q is not a path inside the hosts directory",
				filepath.Join(dir, BackupDir, stateFile), rel)
		}
	}
	return st, nil
}

func saveState(dir string, st state) error {
	slices.Sort(st.Managed)
	slices.Sort(st.Originals)
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("save sluice state: %w", err)
	}
	if err := writeAtomic(filepath.Join(dir, BackupDir, stateFile), append(b, '\n')); err != nil {
		return fmt.Errorf("save sluice state: %w", err)
	}
	return nil
}
