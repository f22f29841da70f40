// Package containerd is the store.Store over a containerd daemon: images
// and tags from the image service, content from the content store (read
// straight from the blob files when the content directory is readable, as
// found through introspection, else through the content API), and changes
// from the event service.
package containerd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	ctr "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/core/content"
	"github.com/containerd/containerd/v2/pkg/namespaces"
	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// Labels containerd and the CRI plugin use.
const (
	LabelDistributionSource = "containerd.io/distribution.source."
	LabelPinned             = "io.cri-containerd.pinned"
)

// Store reads a containerd namespace.
type Store struct {
	client     *ctr.Client
	namespace  string
	contentDir string // blobs root when readable, else ""
	log        *slog.Logger
	images     imageSources // sources of unlabelled content
	ported     portedHosts  // hosts images name with a port (labels drop it)
}

var (
	_ store.Store      = (*Store)(nil)
	_ store.Subscriber = (*Store)(nil)
)

// Open connects to the containerd socket and detects whether blob files can
// be read directly.
func Open(ctx context.Context, socket, namespace string, log *slog.Logger) (*Store, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	client, err := ctr.New(socket, ctr.WithDefaultNamespace(namespace))
	if err != nil {
		return nil, fmt.Errorf("connect to containerd at %s: %w", socket, err)
	}
	s := &Store{client: client, namespace: namespace, log: log}
	s.contentDir = s.detectContentDir(ctx)
	return s, nil
}

// Close closes the client.
func (s *Store) Close() error { return s.client.Close() }

// Client returns the containerd client.
func (s *Store) Client() *ctr.Client { return s.client }

// Name implements store.Namer.
func (s *Store) Name() string { return "containerd:" + s.namespace }

// ContentDir returns the directory blob files are read from, "" when
// content goes through the API.
func (s *Store) ContentDir() string { return s.contentDir }

func (s *Store) ctx(ctx context.Context) context.Context {
	return namespaces.WithNamespace(ctx, s.namespace)
}

// detectContentDir asks containerd where its content plugin keeps blobs and
// checks this process can read them.
func (s *Store) detectContentDir(ctx context.Context) string {
	resp, err := s.client.IntrospectionService().Plugins(s.ctx(ctx), "type==io.containerd.content.v1")
	if err != nil {
		s.log.Info("content introspection failed; reading content through the API", "err", err)
		return ""
	}
	for _, p := range resp.GetPlugins() {
		root := p.GetExports()["root"]
		if root == "" {
			continue
		}
		// blobs/ appears with the first content; the root tells readability.
		dir := filepath.Join(root, "blobs")
		if f, err := os.Open(root); err == nil {
			f.Close()
			s.log.Info("reading blobs from the content directory", "dir", dir)
			return dir
		}
	}
	s.log.Info("content directory not readable; reading content through the API")
	return ""
}

// Resolve implements store.Store.
func (s *Store) Resolve(ctx context.Context, registry, repository, tag string) (ocispec.Descriptor, error) {
	name := registry + "/" + repository + ":" + tag
	img, err := s.client.ImageService().Get(s.ctx(ctx), name)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return ocispec.Descriptor{}, fmt.Errorf("%s: %w", name, store.ErrNotFound)
		}
		return ocispec.Descriptor{}, fmt.Errorf("get image %s: %w", name, err)
	}
	return img.Target, nil
}

// Stat implements store.Store. Content without distribution source
// labels is known under the images that reach it.
func (s *Store) Stat(ctx context.Context, d digest.Digest) (store.Info, error) {
	info, err := s.statLabels(ctx, d)
	if err != nil {
		return info, err
	}
	if len(info.Registries) > 0 {
		if !slices.ContainsFunc(info.Registries, s.ported.has) {
			return info, nil
		}
		// A label without the port of the registry the content came from
		// (ported.go): read with the images that reach it.
		imgRegs, _, err := s.images.of(ctx, s, d)
		if err != nil {
			return store.Info{}, fmt.Errorf("sources of %s: %w", d, err)
		}
		info.Registries, info.Repositories = sources(info.Labels, func(r string) []string { return portlessLabel(r, imgRegs) })
		return info, nil
	}
	if info.Registries, info.Repositories, err = s.images.of(ctx, s, d); err != nil {
		return store.Info{}, fmt.Errorf("sources of %s: %w", d, err)
	}
	return info, nil
}

// statLabels is Stat with the sources from the labels alone.
func (s *Store) statLabels(ctx context.Context, d digest.Digest) (store.Info, error) {
	info, err := s.client.ContentStore().Info(s.ctx(ctx), d)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return store.Info{}, fmt.Errorf("%s: %w", d, store.ErrNotFound)
		}
		return store.Info{}, fmt.Errorf("content info %s: %w", d, err)
	}
	regs, repos := sources(info.Labels, func(r string) []string { return []string{r} })
	return store.Info{Digest: d, Size: info.Size, Labels: info.Labels, Registries: regs, Repositories: repos}, nil
}

// sources reads the distribution source labels: the key names the
// registry, the value the comma-separated repositories. expand turns a
// label's registry into the registries it stands for (portedHosts).
func sources(labels map[string]string, expand func(string) []string) (registries, repositories []string) {
	set := store.SourceSet{}
	for k, v := range labels {
		label, ok := strings.CutPrefix(k, LabelDistributionSource)
		if !ok || label == "" {
			continue
		}
		for _, r := range expand(oci.NormalizeRegistry(label)) {
			set.Add(r, "")
			for _, repo := range strings.Split(v, ",") {
				if repo = strings.TrimSpace(repo); repo != "" {
					set.Add(r, repo)
				}
			}
		}
	}
	return set.Lists()
}

// Open implements store.Store.
func (s *Store) Open(ctx context.Context, d digest.Digest) (store.Content, error) {
	if s.contentDir != "" && d.Validate() == nil {
		f, err := store.OpenFile(filepath.Join(s.contentDir, d.Algorithm().String(), d.Encoded()), d)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, store.ErrNotFound) {
			s.log.Debug("direct read failed; using the content API", "digest", d, "err", err)
		}
	}
	ra, err := s.client.ContentStore().ReaderAt(s.ctx(ctx), ocispec.Descriptor{Digest: d})
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, fmt.Errorf("%s: %w", d, store.ErrNotFound)
		}
		return nil, fmt.Errorf("open %s: %w", d, err)
	}
	return readerAt{ra}, nil
}

type readerAt struct{ content.ReaderAt }

func (r readerAt) Size() int64 { return r.ReaderAt.Size() }

// Images implements store.Store. Names without a tag (digest references,
// bare IDs) are skipped: their content is reachable by digest anyway.
func (s *Store) Images(ctx context.Context) ([]store.Image, error) {
	imgs, err := s.client.ImageService().List(s.ctx(ctx))
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]store.Image, 0, len(imgs))
	for _, img := range imgs {
		r, err := oci.ParseImageName(img.Name)
		if err != nil || r.Tag == "" {
			continue
		}
		s.ported.note(r.Registry)
		out = append(out, store.Image{
			Name: r.Registry + "/" + r.Repository + ":" + r.Tag, Registry: r.Registry, Repository: r.Repository, Tag: r.Tag,
			Target: img.Target, Pinned: img.Labels[LabelPinned] == "pinned", Labels: img.Labels,
		})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
