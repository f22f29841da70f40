// Package pool is a bounded pool of values that are expensive to create and
// not safe for concurrent use, such as Wasm module instances. Unlike
// sync.Pool it never drops a value behind the owner's back (an instance
// must be closed explicitly), and it bounds how many values exist at once.
package pool

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned by Get after Close.
var ErrClosed = errors.New("pool closed")

// Pool holds at most Max values. Get hands out an idle value, creates one
// while fewer than Max exist, or waits for one to be returned.
type Pool[T any] struct {
	newFn   func(context.Context) (T, error)
	closeFn func(T)
	idle    chan T
	slots   chan struct{} // one token per live value

	mu     sync.Mutex
	closed bool
	done   chan struct{}
}

// New returns a pool of at most size values made by newFn and released by
// closeFn. size < 1 is taken as 1.
func New[T any](size int, newFn func(context.Context) (T, error), closeFn func(T)) *Pool[T] {
	size = max(size, 1)
	return &Pool[T]{
		newFn:   newFn,
		closeFn: closeFn,
		idle:    make(chan T, size),
		slots:   make(chan struct{}, size),
		done:    make(chan struct{}),
	}
}

// Max is the bound on live values.
func (p *Pool[T]) Max() int { return cap(p.slots) }

// Get returns an idle value or a new one, waiting until ctx is done when
// Max values are in use.
func (p *Pool[T]) Get(ctx context.Context) (T, error) {
	var zero T
	select {
	case v := <-p.idle:
		return v, nil
	case <-p.done:
		return zero, ErrClosed
	default:
	}
	select {
	case v := <-p.idle:
		return v, nil
	case p.slots <- struct{}{}:
		v, err := p.newFn(ctx)
		if err != nil {
			<-p.slots
			return zero, err
		}
		return v, nil
	case <-p.done:
		return zero, ErrClosed
	case <-ctx.Done():
		return zero, context.Cause(ctx)
	}
}

// TryGet returns an idle value without waiting, or false.
func (p *Pool[T]) TryGet() (T, bool) {
	select {
	case v := <-p.idle:
		return v, true
	default:
		var zero T
		return zero, false
	}
}

// Put returns a healthy value for reuse. After Close it closes v instead.
func (p *Pool[T]) Put(v T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		p.closeFn(v)
		<-p.slots
		return
	}
	p.idle <- v // never blocks: idle holds at most cap(slots) values
}

// Discard closes a broken value and frees its slot.
func (p *Pool[T]) Discard(v T) {
	p.closeFn(v)
	<-p.slots
}

// Live reports how many values exist (idle or in use).
func (p *Pool[T]) Live() int { return len(p.slots) }

// Idle reports how many values wait in the pool.
func (p *Pool[T]) Idle() int { return len(p.idle) }

// Close closes the idle values; values in use are closed when put back.
// Get fails with ErrClosed afterwards. Close is idempotent.
func (p *Pool[T]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	close(p.done)
	for {
		select {
		case v := <-p.idle:
			p.closeFn(v)
			<-p.slots
		default:
			return
		}
	}
}
