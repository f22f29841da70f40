package containerd

import (
	"context"
	"time"

	eventtypes "github.com/containerd/containerd/api/events"
	"github.com/containerd/containerd/v2/core/events"
	"github.com/containerd/typeurl/v2"
	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/oci"
	"github.com/sluice-oci/sluice/core/store"
)

// Backoff of the event stream's resubscription.
const (
	minStreamBackoff = 100 * time.Millisecond
	maxStreamBackoff = 10 * time.Second
	// healthyStream is how long a stream must last (or it must have
	// delivered an event) for the backoff to start again from the minimum.
	healthyStream = 5 * time.Second
)

// Subscribe implements store.Subscriber over containerd's event service.
// The first subscription is made before Subscribe returns, so no event
// after it is lost. When the stream breaks (containerd restarted) it
// subscribes again with backoff, and once the new subscription is accepted
// it sends a store.EventResync: events of the gap are lost and the consumer
// must rescan. The backoff starts again from the minimum after a healthy
// stream. The channel closes only when ctx is done.
func (s *Store) Subscribe(ctx context.Context) (<-chan store.Event, error) {
	out := make(chan store.Event, 64)
	envs, errs, _ := s.subscribe(ctx)
	go func() {
		defer close(out)
		backoff := minStreamBackoff
		for {
			start := time.Now()
			delivered := s.stream(ctx, envs, errs, out)
			if ctx.Err() != nil {
				return
			}
			if delivered || time.Since(start) >= healthyStream {
				backoff = minStreamBackoff
			}
			for {
				select {
				case <-ctx.Done():
					return
				case <-time.After(backoff):
				}
				backoff = min(backoff*2, maxStreamBackoff)
				var ok bool
				envs, errs, ok = s.subscribe(ctx)
				if ok {
					break
				}
			}
			s.log.Info("containerd event stream re-established; rescanning", "namespace", s.namespace)
			select {
			case out <- store.Event{Type: store.EventResync}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// subscribe opens an event stream; ok is false when containerd refused it
// at once (it is down), the error is then logged at debug level.
func (s *Store) subscribe(ctx context.Context) (<-chan *events.Envelope, <-chan error, bool) {
	envs, errs := s.client.EventService().Subscribe(ctx, `topic~="/images/"`, `topic~="/content/"`)
	// The client reports a refused subscription on errs before returning.
	select {
	case err := <-errs:
		if ctx.Err() == nil {
			s.log.Debug("containerd event subscription refused", "err", err)
		}
		return nil, nil, false
	default:
		return envs, errs, true
	}
}

// stream forwards the events of one subscription until it breaks or ctx
// is done, and reports whether it delivered any. A nil envs (the first
// subscription was refused) returns at once.
func (s *Store) stream(ctx context.Context, envs <-chan *events.Envelope, errs <-chan error, out chan<- store.Event) (delivered bool) {
	if envs == nil {
		return false
	}
	for {
		select {
		case <-ctx.Done():
			return delivered
		case err, ok := <-errs:
			if !ok {
				return delivered
			}
			if err != nil && ctx.Err() == nil {
				s.log.Warn("containerd event stream ended; resubscribing", "err", err)
			}
			return delivered
		case env := <-envs:
			if env == nil {
				continue
			}
			delivered = true
			if env.Namespace != s.namespace || env.Event == nil {
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
				return delivered
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
		s.ported.note(r.Registry)
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
