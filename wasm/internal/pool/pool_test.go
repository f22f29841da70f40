package pool

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type item struct{ id int }

func newTestPool(max int) (*Pool[*item], *atomic.Int32, *atomic.Int32) {
	var made, closed atomic.Int32
	p := New(max, func(context.Context) (*item, error) {
		return &item{id: int(made.Add(1))}, nil
	}, func(*item) { closed.Add(1) })
	return p, &made, &closed
}

func TestPool_GetPutReuses(t *testing.T) {
	t.Parallel()
	p, made, _ := newTestPool(2)
	a, err := p.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	p.Put(a)
	b, err := p.Get(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if a != b || made.Load() != 1 {
		t.Fatalf("got %p after %p, made %d; want reuse", b, a, made.Load())
	}
}

func TestPool_BoundedAndWaits(t *testing.T) {
	t.Parallel()
	p, _, _ := newTestPool(1)
	a, _ := p.Get(t.Context())
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if _, err := p.Get(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Get on a full pool = %v, want deadline exceeded", err)
	}
	go func() { time.Sleep(5 * time.Millisecond); p.Put(a) }()
	b, err := p.Get(t.Context())
	if err != nil || b != a {
		t.Fatalf("Get after Put = %v, %v", b, err)
	}
}

func TestPool_DiscardFreesSlot(t *testing.T) {
	t.Parallel()
	p, made, closed := newTestPool(1)
	a, _ := p.Get(t.Context())
	p.Discard(a)
	b, err := p.Get(t.Context())
	if err != nil || b == a || made.Load() != 2 || closed.Load() != 1 {
		t.Fatalf("after Discard: %v %v made=%d closed=%d", b, err, made.Load(), closed.Load())
	}
}

func TestPool_NewErrorFreesSlot(t *testing.T) {
	t.Parallel()
	fail := errors.New("boom")
	p := New(1, func(context.Context) (int, error) { return 0, fail }, func(int) {})
	for range 3 {
		if _, err := p.Get(t.Context()); !errors.Is(err, fail) {
			t.Fatalf("Get = %v, want %v", err, fail)
		}
	}
	if p.Live() != 0 {
		t.Fatalf("Live = %d, want 0", p.Live())
	}
}

func TestPool_Close(t *testing.T) {
	t.Parallel()
	p, _, closed := newTestPool(3)
	a, _ := p.Get(t.Context())
	b, _ := p.Get(t.Context())
	p.Put(a)
	p.Close()
	p.Close()
	if closed.Load() != 1 {
		t.Fatalf("closed %d idle values, want 1", closed.Load())
	}
	p.Put(b)
	if closed.Load() != 2 || p.Live() != 0 {
		t.Fatalf("after Put on closed pool: closed=%d live=%d", closed.Load(), p.Live())
	}
	if _, err := p.Get(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close = %v, want ErrClosed", err)
	}
}

func TestPool_Concurrent(t *testing.T) {
	t.Parallel()
	p, made, _ := newTestPool(4)
	var inUse, peak atomic.Int32
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 200 {
				v, err := p.Get(t.Context())
				if err != nil {
					t.Error(err)
					return
				}
				n := inUse.Add(1)
				for {
					old := peak.Load()
					if n <= old || peak.CompareAndSwap(old, n) {
						break
					}
				}
				inUse.Add(-1)
				p.Put(v)
			}
		})
	}
	wg.Wait()
	if made.Load() > 4 || peak.Load() > 4 {
		t.Fatalf("made %d, peak %d; want <= 4", made.Load(), peak.Load())
	}
}
