package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// leaveTimeout bounds telling the peers this node leaves.
const leaveTimeout = 5 * time.Second

// drain is the node's graceful shutdown, in this order: readiness fails
// (so a Service or an operator sees the node going), the advertiser stops
// (no more announcements) and the peers are told this node left (their
// lookups skip it from now on, without waiting for the records to
// expire), the transfer listeners stop accepting and in-flight responses
// run to completion up to the deadline, then the caller closes the DHT
// host. It returns an error when transfers were still running at the
// deadline (they are cut).
type drain struct {
	draining   atomic.Bool
	log        *slog.Logger
	timeout    time.Duration
	stopAdvert func()                             // stops the advertiser and waits for it
	leave      func(context.Context) (int, error) // tells the peers
	mu         sync.Mutex
	transfer   []*http.Server // registry and local listeners: drained
	other      []*http.Server // metrics: closed last
}

func (d *drain) add(srv *http.Server, transfers bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if transfers {
		d.transfer = append(d.transfer, srv)
	} else {
		d.other = append(d.other, srv)
	}
}

// run drains the node; graceful is false when a server failed and the node
// stops at once.
func (d *drain) run(graceful bool) error {
	start := time.Now()
	d.draining.Store(true)
	d.mu.Lock()
	transfer, other := d.transfer, d.other
	d.mu.Unlock()
	var err error
	if graceful {
		d.log.Info("draining: readiness fails, advertising stops, in-flight transfers finish", "deadline", d.timeout)
		if d.stopAdvert != nil {
			d.stopAdvert()
		}
		if d.leave != nil {
			lctx, cancel := context.WithTimeout(context.Background(), leaveTimeout)
			told, lerr := d.leave(lctx)
			cancel()
			if lerr != nil {
				d.log.Warn("could not tell every peer this node leaves; their lookups skip it when its records expire", "told", told, "err", lerr)
			} else {
				d.log.Info("peers told this node leaves", "peers", told)
			}
		}
		sctx, cancel := context.WithDeadline(context.Background(), start.Add(d.timeout))
		err = shutdownAll(sctx, transfer)
		cancel()
		if err != nil {
			err = fmt.Errorf("shutdown: transfers still running after --shutdown-timeout %s were cut: %w", d.timeout, err)
		}
	} else {
		_ = shutdownAll(expired(), transfer)
	}
	_ = shutdownAll(expired(), other)
	if err == nil && graceful {
		d.log.Info("drained", "took", time.Since(start).Round(time.Millisecond))
	}
	return err
}

// expired is a context already done: Shutdown then closes at once.
func expired() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// shutdownAll shuts the servers down together; a server whose connections
// are still active when ctx ends is closed (its transfers cut).
func shutdownAll(ctx context.Context, srvs []*http.Server) error {
	var wg sync.WaitGroup
	errs := make([]error, len(srvs))
	for i, srv := range srvs {
		wg.Go(func() {
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
				errs[i] = err
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// notifyContext is signal.NotifyContext with a second chance: the first
// SIGTERM or interrupt cancels the returned context (the node drains); a
// second one calls exit at once.
func notifyContext(parent context.Context, stderr io.Writer, exit func(int)) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "sluice: %s: shutting down gracefully; send it again to exit at once\n", s)
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "sluice: second %s: exiting now\n", s)
			exit(130)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
