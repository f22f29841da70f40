package containerd

import (
	"context"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// Subscribe implements store.Subscriber over containerd's event service.
// When the stream breaks it resubscribes with backoff; the channel closes
// only when ctx is done.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	out := make(chan store.Event, 64)
	go func() {
		defer close(out)
		backoff := 100 * time.Millisecond
		for ctx.Err() == nil {
			s.stream(ctx, out)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(backoff*2, 10*time.Second)
		}
	}()
	return out, nil
}

func (s *Store) stream(ctx context.Context, out chan<- store.Event) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	envs, errs := s.client.EventService().Subscribe(ctx,
		`topic~="/images/"`, `topic~="/content/"`)
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-errs:
			if err != nil && ctx.Err() == nil {
				s.log.Warn("containerd event stream ended; resubscribing", "err", err)
			}
			return
		case env := <-envs:
			if env == nil || env.Namespace != s.namespace || env.Event == nil {
				continue
			}
			v, err := typeurl.UnmarshalAny(env.Event)
			if err != nil {
				s.log.Debug("undecodable containerd event", "topic", env.Topic, "err", err)
				continue
			}
			ev, ok := s.translate(ctx, v)
			if !ok {
				continue
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

func (s *Store) translate(ctx context.Context, v any) (store.Event, bool) {
	image := func(t store.EventType, name string) (store.Event, bool) {
		r, err := oci.ParseImageName(name)
		if err != nil || r.Tag == "" {
			return store.Event{}, false
		}
		img := store.Image{Name: r.Registry + "/" + r.Repository + ":" + r.Tag, Registry: r.Registry, Repository: r.Repository, Tag: r.Tag}
		if t != store.EventImageDelete {
			if got, err := s.client.ImageService().Get(s.ctx(ctx), name); err == nil {
				img.Target, img.Labels = got.Target, got.Labels
				img.Pinned = got.Labels[LabelPinned] == "pinned"
			}
		}
		return store.Event{Type: t, Image: img}, true
	}
	switch e := v.(type) {
	case *eventtypes.ImageCreate:
		return image(store.EventImageCreate, e.Name)
	case *eventtypes.ImageUpdate:
		return image(store.EventImageUpdate, e.Name)
	case *eventtypes.ImageDelete:
		return image(store.EventImageDelete, e.Name)
	case *eventtypes.ContentCreate:
		d, err := digest.Parse(e.Digest)
		if err != nil {
			return store.Event{}, false
		}
		return store.Event{Type: store.EventContentCreate, Digest: d}, true
	case *eventtypes.ContentDelete:
		d, err := digest.Parse(e.Digest)
		if err != nil {
			return store.Event{}, false
		}
		return store.Event{Type: store.EventContentDelete, Digest: d}, true
	}
	return store.Event{}, false
}
