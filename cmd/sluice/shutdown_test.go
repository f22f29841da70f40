package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestParseRunConfig_ShutdownTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		arg     string
		want    time.Duration
		wantErr bool
	}{
		{arg: "", want: 30 * time.Second},
		{arg: "45s", want: 45 * time.Second},
		{arg: "0s", wantErr: true},
		{arg: "-1s", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			var args []string
			if tc.arg != "" {
				args = []string{"--shutdown-timeout", tc.arg}
			}
			cfg, err := parseRunConfig(args, io.Discard)
			if tc.wantErr {
				if err == nil || !strings.Contains(err.Error(), "--shutdown-timeout") {
					t.Fatalf("err %v, want one naming --shutdown-timeout", err)
				}
				return
			}
			if err != nil || cfg.ShutdownTimeout != tc.want {
				t.Fatalf("got %v, %v; want %v", cfg, err, tc.want)
			}
		})
	}
}

// slowServer serves a body of n bytes over d, in 10 pieces.
func slowServer(t *testing.T, n int, d time.Duration) (*http.Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", strconv.Itoa(n))
		for range 10 {
			_, _ = w.Write(bytes.Repeat([]byte("x"), n/10))
			w.(http.Flusher).Flush()
			time.Sleep(d / 10)
		}
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return srv, "http://" + ln.Addr().String()
}

// TestDrain_Run: readiness fails and advertising stops before the peers
// are told, an in-flight transfer finishes within the deadline (clean
// drain: nil), and one that outlasts the deadline is cut (an error).
func TestDrain_Run(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		timeout  time.Duration
		wantErr  bool
		wantBody bool
	}{
		{name: "transfer finishes", timeout: 5 * time.Second, wantBody: true},
		{name: "deadline cuts it", timeout: 200 * time.Millisecond, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, url := slowServer(t, 1000, time.Second)
			var mu sync.Mutex
			var steps []string
			step := func(s string) { mu.Lock(); steps = append(steps, s); mu.Unlock() }
			d := &drain{log: slog.New(slog.DiscardHandler), timeout: tc.timeout}
			d.stopAdvert = func() {
				if !d.draining.Load() {
					t.Error("advertising stopped before readiness failed")
				}
				step("advert")
			}
			d.leave = func(context.Context) (int, error) { step("leave"); return 1, nil }
			d.add(srv, true)
			type result struct {
				n   int
				err error
			}
			got := make(chan result, 1)
			go func() {
				resp, err := http.Get(url)
				if err != nil {
					got <- result{err: err}
					return
				}
				defer resp.Body.Close()
				b, err := io.ReadAll(resp.Body)
				got <- result{len(b), err}
			}()
			time.Sleep(150 * time.Millisecond) // the transfer is under way
			start := time.Now()
			err := d.run(true)
			took := time.Since(start)
			if (err != nil) != tc.wantErr {
				t.Fatalf("run: %v, want error %v", err, tc.wantErr)
			}
			if took > tc.timeout+time.Second {
				t.Errorf("run took %v, deadline %v", took, tc.timeout)
			}
			r := <-got
			if complete := r.err == nil && r.n == 1000; complete != tc.wantBody {
				t.Errorf("body %d bytes, err %v; want complete %v", r.n, r.err, tc.wantBody)
			}
			if strings.Join(steps, ",") != "advert,leave" {
				t.Errorf("steps %v, want advert then leave", steps)
			}
			if _, err := http.Get(url); err == nil {
				t.Error("listener still accepts after the drain")
			}
		})
	}
}

// TestNotifyContext_SecondSignalExits: the first SIGTERM cancels the
// context (drain), the second calls exit at once.
func TestNotifyContext_SecondSignalExits(t *testing.T) {
	var stderr syncWriter
	exited := make(chan int, 1)
	ctx, stop := notifyContext(t.Context(), &stderr, func(code int) { exited <- code })
	defer stop()
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ctx.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("first SIGTERM did not cancel the context")
	}
	select {
	case <-exited:
		t.Fatal("exit after the first signal")
	case <-time.After(50 * time.Millisecond):
	}
	if err := syscall.Kill(syscall.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-exited:
		if code == 0 {
			t.Errorf("exit code 0 after a second signal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second SIGTERM did not exit")
	}
	if !strings.Contains(stderr.String(), "again to exit at once") {
		t.Errorf("stderr %q", stderr.String())
	}
}

type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}
