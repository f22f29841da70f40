package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/core/store/containerd"
	"github.com/sluice-oci/sluice/core/store/ocidir"
)

// importer is implemented by stores that take image tarballs.
type importer interface {
	Import(ctx context.Context, r io.Reader) ([]string, error)
}

var (
	_ importer = (*containerd.Store)(nil)
	_ importer = (*ocidir.Store)(nil)
)

// openStore opens a store URI: containerd:///path/to.sock or oci:DIR.
func openStore(ctx context.Context, uri, namespace string, log *slog.Logger) (store.Store, func(), error) {
	switch {
	case strings.HasPrefix(uri, "containerd://"):
		sock := strings.TrimPrefix(uri, "containerd://")
		s, err := containerd.Open(ctx, sock, namespace, log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() { _ = s.Close() }, nil
	case strings.HasPrefix(uri, "oci:"):
		s, err := ocidir.Open(strings.TrimPrefix(uri, "oci:"), log)
		if err != nil {
			return nil, nil, err
		}
		return s, func() {}, nil
	}
	return nil, nil, fmt.Errorf("--store %q: want containerd:///path/to/containerd.sock or oci:DIR", uri)
}
