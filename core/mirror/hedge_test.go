package mirror_test

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/routing"
)

// The hedge is a small state machine; these tests follow its comment in
// peers.go, one transition each:
//   - the delay passes and a known peer is queued: start it and re-arm;
//   - the delay passes and no peer is known yet: no new lookup, the fetch
//     loop keeps reading answers, and a peer the running lookup finds
//     later is started then;
//   - an answer fails: the next peer starts at once, without waiting for
//     the delay.

// stallBlob makes node i hold requests for the blob until the client gives
// up (a peer that accepted the connection and never answers).
func stallBlob(nd *node, d digest.Digest, hits *atomic.Int32) {
	good := nd.handler
	nd.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, d.Encoded()) {
			if hits != nil {
				hits.Add(1)
			}
			<-r.Context().Done()
			return
		}
		good.ServeHTTP(w, r)
	})
}

func TestMirror_HedgeRearmsPerStart(t *testing.T) {
	t.Parallel()
	for _, stalled := range []int{1, 2, 3} {
		t.Run(fmt.Sprintf("stalled=%d", stalled), func(t *testing.T) {
			t.Parallel()
			// stalled providers are found first, a healthy one last, the
			// fetching node is the last node.
			const delay = 30 * time.Millisecond
			c := newClusterWith(t, stalled+2, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(delay)}})
			img := buildImage(t, 64<<10)
			l := img.Largest()
			var hits atomic.Int32
			for i := range stalled + 1 {
				c.hold(t, i, img)
				if i < stalled {
					stallBlob(c.nodes[i], l.Digest, &hits)
				}
			}
			fetcher := c.nodes[stalled+1]
			start := time.Now()
			resp, body, err := get(t, fetcher.srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
			el := time.Since(start)
			if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
				t.Fatalf("get: %v %v", err, resp)
			}
			if int(hits.Load()) != stalled {
				t.Fatalf("%d stalled peers asked, want %d", hits.Load(), stalled)
			}
			// One hedge per delay: the healthy peer starts after about
			// stalled×delay, far below the 5 s a stalled peer costs.
			if el > time.Second {
				t.Fatalf("fetch took %s behind %d stalled peers; the hedge did not re-arm", el, stalled)
			}
			if got := counterValue(fetcher.metrics.HedgedFetches); got != float64(stalled) {
				t.Fatalf("hedged fetches = %v, want %d (one per delay, up to the healthy peer)", got, stalled)
			}
		})
	}
}

// lingeringRouter behaves like the DHT: a lookup's channel stays open
// until its deadline, even after the last provider was sent. It counts
// lookups.
type lingeringRouter struct {
	routing.Router
	lookups atomic.Int32
	late    []routing.Peer // sent by the first lookup, after the delay "after"
	after   time.Duration
}

func (r *lingeringRouter) Lookup(ctx context.Context, key string, count int) (<-chan routing.Peer, error) {
	n := r.lookups.Add(1)
	ch, err := r.Router.Lookup(ctx, key, count)
	if err != nil {
		return nil, err
	}
	out := make(chan routing.Peer)
	go func() {
		defer close(out)
		for p := range ch {
			select {
			case out <- p:
			case <-ctx.Done():
				return
			}
		}
		if n == 1 && len(r.late) > 0 {
			select {
			case <-time.After(r.after):
			case <-ctx.Done():
				return
			}
			for _, p := range r.late {
				select {
				case out <- p:
				case <-ctx.Done():
					return
				}
			}
		}
		<-ctx.Done()
	}()
	return out, nil
}

func TestMirror_HedgeWithoutQueuedPeerDoesNotLookUp(t *testing.T) {
	t.Parallel()
	// One provider, slow to answer (80 ms), hedge delay 10 ms. When the
	// hedge fires no other peer is known: the loop must not block in a
	// fresh lookup (here 5×100 ms) or spend one.
	var rt *lingeringRouter
	c := newClusterWith(t, 2, clusterCfg{
		opts: []mirror.Option{mirror.WithHedgeDelay(10 * time.Millisecond), mirror.WithResolveTimeout(100 * time.Millisecond)},
		wrap: func(r routing.Router) routing.Router { rt = &lingeringRouter{Router: r}; return rt },
	})
	img := buildImage(t, 64<<10)
	l := img.Largest()
	c.hold(t, 0, img)
	good := c.nodes[0].handler
	c.nodes[0].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(80 * time.Millisecond)
		good.ServeHTTP(w, r)
	})
	start := time.Now()
	resp, body, err := get(t, c.nodes[1].srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
	el := time.Since(start)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get: %v %v", err, resp)
	}
	if n := rt.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups for one fetch, want 1: the hedge looked up again", n)
	}
	if el > 400*time.Millisecond {
		t.Fatalf("fetch took %s; the answer (80 ms) waited behind a lookup", el)
	}
}

func TestMirror_HedgeStartsPeerFoundLater(t *testing.T) {
	t.Parallel()
	// The lookup finds a stalled provider at once and a healthy one 60 ms
	// later, while a hedge (delay 10 ms) is already due: the healthy one
	// starts as soon as it is found.
	var rt *lingeringRouter
	c := newClusterWith(t, 3, clusterCfg{
		opts: []mirror.Option{mirror.WithHedgeDelay(10 * time.Millisecond), mirror.WithResolveTimeout(500 * time.Millisecond)},
		wrap: func(r routing.Router) routing.Router {
			rt = &lingeringRouter{Router: r, after: 60 * time.Millisecond}
			return rt
		},
	})
	img := buildImage(t, 64<<10)
	l := img.Largest()
	c.hold(t, 0, img)
	stallBlob(c.nodes[0], l.Digest, nil)
	if err := img.AddTo(c.nodes[1].store, "docker.io"); err != nil { // holds it, not announced
		t.Fatal(err)
	}
	rt.late = []routing.Peer{c.nodes[1].router.Peer()}
	start := time.Now()
	resp, body, err := get(t, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
	el := time.Since(start)
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get: %v %v", err, resp)
	}
	if el > time.Second {
		t.Fatalf("fetch took %s; the peer found later was not hedged to", el)
	}
	if n := rt.lookups.Load(); n != 1 {
		t.Fatalf("%d lookups, want 1", n)
	}
}

func TestMirror_FailedAnswerStartsNextAtOnce(t *testing.T) {
	t.Parallel()
	// With a hedge delay far longer than the test, a peer answering 500
	// must hand over to the next peer at once.
	c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(time.Minute)}})
	img := buildImage(t, 64<<10)
	l := img.Largest()
	c.hold(t, 0, img)
	c.hold(t, 1, img)
	var failed atomic.Int32
	good := c.nodes[0].handler
	c.nodes[0].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.Contains(r.URL.Path, l.Digest.Encoded()) {
			failed.Add(1)
			http.Error(w, "broken", http.StatusInternalServerError)
			return
		}
		good.ServeHTTP(w, r)
	})
	start := time.Now()
	resp, body, err := get(t, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get: %v %v", err, resp)
	}
	if failed.Load() != 1 {
		t.Fatalf("the failing peer was asked %d times, want 1", failed.Load())
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("fetch took %s after a failed answer", el)
	}
	if got := counterValue(c.nodes[2].metrics.HedgedFetches); got != 0 {
		t.Fatalf("a replacement after a failure counted as a hedge (%v)", got)
	}
}

// TestMirror_HedgeLoserResumesAfterWinnerDies: the first provider asked is
// slow to answer, the hedge goes to the second, which wins the race and
// dies half-way through the blob. The loser was cancelled, not failed:
// the resume asks it, and the client gets the whole blob.
func TestMirror_HedgeLoserResumesAfterWinnerDies(t *testing.T) {
	t.Parallel()
	c := newClusterWith(t, 3, clusterCfg{opts: []mirror.Option{mirror.WithHedgeDelay(20 * time.Millisecond)}})
	img := buildImage(t, 4<<20)
	c.hold(t, 0, img)
	c.hold(t, 1, img)
	l := img.Largest()
	var whole atomic.Int32
	for _, i := range []int{0, 1} {
		good := c.nodes[i].handler
		c.nodes[i].handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !strings.Contains(r.URL.Path, l.Digest.Encoded()) || r.Method != http.MethodGet || r.Header.Get("Range") != "" {
				good.ServeHTTP(w, r)
				return
			}
			switch whole.Add(1) {
			case 1: // asked first: slow, so the hedge starts and wins
				select {
				case <-r.Context().Done():
					return
				case <-time.After(2 * time.Second):
				}
			case 2: // the hedge: answers at once, dies half-way
				w.Header().Set("Content-Length", fmt.Sprint(l.Size))
				w.WriteHeader(http.StatusOK)
				_, _ = w.Write(img.Blobs[l.Digest][:l.Size/2])
				panic(http.ErrAbortHandler)
			}
			good.ServeHTTP(w, r)
		})
	}
	resp, body, err := get(t, c.nodes[2].srv.URL+"/v2/library/app/blobs/"+l.Digest.String())
	if whole.Load() < 2 {
		t.Fatal("no hedge was sent; the test tested nothing")
	}
	if err != nil || resp.StatusCode != 200 || digest.FromBytes(body) != l.Digest {
		t.Fatalf("get after the hedge winner died: %v %v", err, resp)
	}
}
