package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/mirror"
	"github.com/sluice-oci/sluice/core/registry"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/store"
	"github.com/sluice-oci/sluice/internal/memtrim"
	"github.com/sluice-oci/sluice/policy"
	"github.com/sluice-oci/sluice/wasm"
)

func runCmd(ctx context.Context, args []string, _, stderr io.Writer) error {
	cfg, err := parseRunConfig(args, stderr)
	if err != nil {
		return err
	}
	log, err := newLogger(cfg.LogLevel, cfg.LogFormat, stderr)
	if err != nil {
		return err
	}
	if _, set := os.LookupEnv("GOGC"); !set {
		// A node agent lives beside the workloads: trade a little GC CPU
		// for a smaller heap (see RATIONALE.md). GOGC overrides it.
		debug.SetGCPercent(50)
	}
	if limit, err := softMemoryLimit(os.LookupEnv); err != nil {
		return err
	} else if limit > 0 {
		debug.SetMemoryLimit(limit)
	}
	return runNode(ctx, cfg, log)
}

// runNode wires a node together and serves until stop is done, then
// drains (see drain) and returns nil when the drain was clean.
func runNode(stop context.Context, cfg *runConfig, log *slog.Logger) error {
	// The node's own lifetime outlasts stop by the drain.
	ctx, cancel := context.WithCancel(context.WithoutCancel(stop))
	defer cancel()
	started := time.Now()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	trims := prometheus.NewCounter(prometheus.CounterOpts{Name: "sluice_memory_trims_total",
		Help: "Times the node, quiet after a burst of work, returned its free heap to the OS."})
	reg.MustRegister(trims)
	go memtrim.New(memtrim.WithOnTrim(trims.Inc)).Run(ctx)

	uri, why := cfg.storeURI()
	st, closeStore, err := openStore(ctx, uri, cfg.ContainerdNamespace, log)
	if err != nil {
		return err
	}
	defer closeStore()
	logStore(ctx, log, st, uri, why)

	popts := []policy.Option{
		policy.WithFailOpen(cfg.PolicyFailOpen), policy.WithRegisterer(reg), policy.WithLogger(log),
		policy.WithNode(policy.Node{Name: cfg.NodeName}),
		policy.WithWasm(wasm.Opener(wasm.WithLogger(log), wasm.WithRegisterer(reg))),
	}
	if cfg.PolicyVerificationKey != "" {
		popts = append(popts, policy.WithVerificationKeyFile(cfg.PolicyVerificationKey))
	}
	opa, opaOpts, err := openPolicyConfig(ctx, cfg, reg, log)
	if err != nil {
		return err
	}
	pol, err := policy.Load(ctx, cfg.Policy, append(popts, opaOpts...)...)
	if err != nil {
		return fmt.Errorf("load policy: %w", err)
	}
	defer pol.Close()
	stopOPA, err := startPolicyConfig(ctx, opa, pol)
	if err != nil {
		return err
	}
	defer stopOPA()
	go func() {
		if err := pol.Watch(ctx); err != nil && ctx.Err() == nil {
			log.Error("policy watch stopped", "err", err)
		}
	}()
	if err := watchRegistries(ctx, cfg.Registries, pol, log); err != nil {
		return err
	}

	regPort, err := portOf(cfg.RegistryAddr)
	if err != nil {
		return fmt.Errorf("--registry-addr %q: %w", cfg.RegistryAddr, err)
	}
	psk, err := loadPSK(cfg.PSKFile)
	if err != nil {
		return err
	}
	tlsOn := cfg.TLSCert != ""
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	router, err := routing.NewP2P(ctx, routing.P2PConfig{
		ListenAddr: cfg.P2PAddr, DataDir: cfg.DataDir, RegistryPort: regPort, RegistryScheme: scheme,
		RegistryIP: hostIP(cfg.RegistryAddr), AnnounceAddrs: cfg.P2PAnnounce,
		PSK: psk, Bootstrap: cfg.Bootstrap, Logger: log,
	})
	if err != nil {
		return err
	}
	defer router.Close()
	log.Info("p2p up", "id", router.ID().String(), "addrs", fmt.Sprint(router.Addrs()))

	adv := routing.NewAdvertiser(router, st, routing.WithPolicy(pol), routing.WithLogger(log), routing.WithRegisterer(reg))
	advCtx, stopAdv := context.WithCancel(ctx)
	advDone := make(chan struct{})
	go func() {
		defer close(advDone)
		if err := adv.Run(advCtx); err != nil && advCtx.Err() == nil {
			log.Error("advertiser stopped", "err", err)
		}
	}()
	dr := &drain{log: log, timeout: cfg.ShutdownTimeout, leave: router.Leave,
		stopAdvert: func() { stopAdv(); <-advDone }}
	reqLog := newRequestLog()

	mopts := []mirror.Option{mirror.WithSelf(router.ID().String()), mirror.WithResolveTimeout(cfg.ResolveTimeout),
		mirror.WithMetrics(m), mirror.WithLogger(log), mirror.WithMaxConcurrent(cfg.MaxPeerFetches),
		mirror.WithPeerFetchParallel(cfg.PeerFetchParallel), mirror.WithMultiPeerMemory(int64(cfg.PeerFetchMemory))}
	serverTLS, clientTLS, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	if clientTLS != nil {
		mopts = append(mopts, mirror.WithTLS(clientTLS))
	}
	ropts := []registry.Option{registry.WithPolicy(pol), registry.WithMetrics(m),
		registry.WithLogger(log), registry.WithDefaultRegistry(cfg.DefaultRegistry), registry.WithPeerRateLimit(cfg.PeerRateLimit),
		registry.WithMaxPeerServes(cfg.MaxPeerServes),
		registry.WithClientStore(isContainerdStore(st)), // the local containerd is answered through peers only
		registry.WithObserver(reqLog)}
	if cfg.Coalesce.On {
		co, self, err := newCoalescer(ctx, cfg, router, pol, m, scheme, regPort, log)
		if err != nil {
			return fmt.Errorf("--coalesce: %w", err)
		}
		defer co.Close()
		mopts = append(mopts, mirror.WithCoalesce(self))
		ropts = append(ropts, registry.WithCoalescer(co))
	}
	mir := mirror.New(router, mopts...)
	api := registry.New(st, append(ropts, registry.WithMirror(mir))...)

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	serve := func(name, addr string, h http.Handler, tlsCfg bool) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s listen %s: %w", name, addr, err)
		}
		srv := newHTTPServer(h, cfg, log)
		if tlsCfg {
			srv.TLSConfig = serverTLS
		}
		dr.add(srv, name != "metrics")
		log.Info("listening", "server", name, "addr", ln.Addr().String(), "tls", tlsCfg)
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if tlsCfg {
				err = srv.ServeTLS(ln, "", "")
			} else {
				err = srv.Serve(ln)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", name, err)
			}
		}()
		return nil
	}
	if err := serve("registry", cfg.RegistryAddr, api, tlsOn); err != nil {
		return err
	}
	if cfg.LocalAddr != "" {
		if !isLoopbackAddr(cfg.LocalAddr) {
			return fmt.Errorf("--local-addr %q must be a loopback address: it serves without TLS", cfg.LocalAddr)
		}
		if err := serve("local", cfg.LocalAddr, localOnly(api), false); err != nil {
			return err
		}
	}
	if cfg.MetricsAddr != "" {
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		if cfg.Pprof {
			mux.HandleFunc("/debug/pprof/", pprof.Index)
			mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
		mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
			if dr.draining.Load() {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, "not ready: shutting down\n")
				return
			}
			ok, err := router.Ready(r.Context())
			if err == nil && !ok && isAlone(router) {
				_, _ = io.WriteString(w, "ok: alone (bootstrap found no other node)\n")
				return
			}
			if !ok || err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				fmt.Fprintf(w, "not ready: no peers known (err %v)\n", err)
				return
			}
			_, _ = io.WriteString(w, "ok\n")
		})
		ss := &statusSource{name: cfg.NodeName, registryAddr: cfg.RegistryAddr, started: started, router: router,
			adv: adv, pol: pol, st: st, log: reqLog, draining: &dr.draining, page: newStatusPage()}
		mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) { writeStatus(w, r, ss) })
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { writeStatusHTML(w, r, ss) })
		if err := serve("metrics", cfg.MetricsAddr, mux, false); err != nil {
			return err
		}
	}
	select {
	case <-stop.Done():
		err = dr.run(true)
	case err = <-errc:
		_ = dr.run(false)
	}
	cancel()
	wg.Wait()
	log.Info("stopped")
	return err
}

// localOnly refuses requests on the plain local listener that claim to
// come from a peer: peers must use the TLS listener.
func localOnly(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Header.Del(registry.PeerHeader)
		h.ServeHTTP(w, r)
	})
}

func storeName(s store.Store) string {
	if n, ok := s.(store.Namer); ok {
		return n.Name()
	}
	return fmt.Sprintf("%T", s)
}

func watchRegistries(ctx context.Context, path string, pol *policy.Set, log *slog.Logger) error {
	if path == "" {
		return nil // no registries.yaml: share every registry, Spegel's default
	}
	regs, warns, err := config.LoadRegistries(path)
	if err != nil {
		return err
	}
	for _, w := range warns {
		log.Warn("registries.yaml", "warning", w.String())
	}
	pol.SetMirrors(regs.Mirrors())
	log.Info("sharing registries", "mirrors", strings.Join(regs.Mirrors(), ","))
	go func() {
		err := config.WatchRegistries(ctx, path, config.DefaultDebounce, func(r *config.Registries, warns []config.Warning, err error) {
			if err != nil {
				log.Error("registries.yaml reload failed; keeping the last good mirrors", "file", path, "err", err)
				return
			}
			for _, w := range warns {
				log.Warn("registries.yaml", "warning", w.String())
			}
			pol.SetMirrors(r.Mirrors())
			log.Info("registries.yaml reloaded", "mirrors", strings.Join(r.Mirrors(), ","))
		})
		if err != nil && ctx.Err() == nil {
			log.Error("registries.yaml watch stopped", "err", err)
		}
	}()
	return nil
}

// isAlone reports whether the router has nobody to join (routing.P2P.Alone):
// a one-node cluster, or a node started without bootstrap peers, is ready
// with its own content; a node whose bootstrap peers exist but cannot be
// reached is not.
func isAlone(r any) bool {
	a, ok := r.(interface{ Alone() bool })
	return ok && a.Alone()
}

// softMemoryLimit is the Go runtime's soft memory limit for a node: none
// of ours when GOMEMLIMIT is set (the runtime reads it); 90% of
// SLUICE_MEMORY_LIMIT (bytes: the chart passes the container's memory
// limit) so memory outside the Go heap (wazero's compiled code, stacks)
// stays under the hard limit; else none. A soft limit is a guard below a
// hard one, not a way to keep an idle node small: set below the working
// set it makes the GC run back to back while the node serves (see
// RATIONALE.md); an idle node is kept small by memtrim instead.
func softMemoryLimit(env func(string) (string, bool)) (int64, error) {
	if _, set := env("GOMEMLIMIT"); set {
		return 0, nil
	}
	v, set := env("SLUICE_MEMORY_LIMIT")
	if !set || v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 32<<20 {
		return 0, fmt.Errorf("SLUICE_MEMORY_LIMIT=%q: want the container's memory limit in bytes, at least 32 MiB", v)
	}
	return n / 10 * 9, nil
}
