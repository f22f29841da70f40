package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
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

// isContainerdStore reports whether st is the node's containerd, the local
// client's own store (the embedded oci store belongs to no client).
func isContainerdStore(st store.Store) bool {
	_, ok := st.(*containerd.Store)
	return ok
}

// logStore says loudly which store and namespace the node serves: a node
// serving an empty embedded store, or a containerd namespace that does not
// exist, advertises nothing and looks healthy otherwise.
func logStore(ctx context.Context, log *slog.Logger, st store.Store, uri, why string) {
	cs, ok := st.(*containerd.Store)
	if !ok {
		lvl := slog.LevelInfo
		if why != "--store" {
			lvl = slog.LevelWarn
		}
		log.Log(ctx, lvl, "store open: serving an oci-layout directory", "store", uri, "why", why)
		return
	}
	ns := strings.TrimPrefix(storeName(cs), "containerd:")
	log.Info("store open: serving containerd", "store", uri, "namespace", ns, "why", why)
	names, err := cs.Client().NamespaceService().List(ctx)
	if err != nil {
		log.Warn("cannot list containerd namespaces", "store", uri, "err", err)
		return
	}
	if !slices.Contains(names, ns) {
		log.Warn("containerd namespace does not exist (yet): nothing to serve until images land in it; set --containerd-namespace",
			"store", uri, "namespace", ns, "namespaces", strings.Join(names, ","))
	}
}
