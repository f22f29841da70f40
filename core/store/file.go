package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/opencontainers/go-digest"
)

// File is Content backed by a regular file; it implements Filer so the
// registry can use sendfile.
type File struct {
	f    *os.File
	size int64
}

var (
	_ Content = (*File)(nil)
	_ Filer   = (*File)(nil)
)

// OpenFile opens the blob file at path for content d.
func OpenFile(path string, d digest.Digest) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: %w", d, ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("stat %s: %w", d, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s is not a regular file: %w", d, ErrNotFound)
	}
	return &File{f: f, size: fi.Size()}, nil
}

// Size implements Content.
func (f *File) Size() int64 { return f.size }

// OSFile implements Filer.
func (f *File) OSFile() *os.File { return f.f }

// ReadAt implements io.ReaderAt.
func (f *File) ReadAt(p []byte, off int64) (int, error) { return f.f.ReadAt(p, off) }

// Close implements io.Closer.
func (f *File) Close() error { return f.f.Close() }
