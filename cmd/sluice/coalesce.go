package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-oci/sluice/core/coalesce"
	"github.com/sluice-oci/sluice/core/config"
	"github.com/sluice-oci/sluice/core/metrics"
	"github.com/sluice-oci/sluice/core/routing"
	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/policy"
)

// coalesceFlags are the rollout flags (issue 11).
type coalesceFlags struct {
	On        bool
	SpoolSize sizeFlag
	TTL       time.Duration
	Wildcard  bool
}

func (c *coalesceFlags) register(fs *flag.FlagSet) {
	c.SpoolSize = 10 << 30
	fs.BoolVar(&c.On, "coalesce", true, "rollouts: content no peer holds is asked of the node responsible for its key, which fetches it from the upstream once for all (fetch policy); --coalesce=false answers 404 at once as without it")
	fs.Var(&c.SpoolSize, "coalesce-spool-size", "rollouts: cap of the spool of blobs fetched for peers, under --data-dir (e.g. 10GiB)")
	fs.DurationVar(&c.TTL, "coalesce-ttl", 10*time.Minute, "rollouts: how long a blob fetched for peers is kept after it completed")
	fs.BoolVar(&c.Wildcard, "coalesce-wildcard", false, "rollouts: also fetch for peers from registries that --registries does not list by name under mirrors (a \"*\" match, or no --registries); the registry is named by the requester, so this lets any peer make the node ask any public host (loopback and link-local hosts stay refused)")
}

func (c *coalesceFlags) validate() error {
	if c.SpoolSize <= 0 {
		return fmt.Errorf("--coalesce-spool-size %d: must be positive", c.SpoolSize)
	}
	if c.TTL <= 0 {
		return fmt.Errorf("--coalesce-ttl %s: must be positive", c.TTL)
	}
	return nil
}

// newCoalescer builds the coalescer of a node: the upstream client over
// registries.yaml (endpoints, TLS, credentials; a new client each time the
// file changes, until ctx is done) and the spool under the data directory.
// self is this node's registry as the node's own mirror reaches it when it
// is the responsible one.
func newCoalescer(ctx context.Context, cfg *runConfig, router *routing.P2P, pol policy.Engine, mt *metrics.Metrics, scheme string, port uint16, log *slog.Logger) (*coalesce.Coalescer, routing.Peer, error) {
	var regs *config.Registries
	if cfg.Registries != "" {
		r, _, err := config.LoadRegistries(cfg.Registries)
		if err != nil {
			return nil, routing.Peer{}, err
		}
		regs = r
	}
	c, err := coalesce.New(upstream.New(regs, upstream.WithLogger(log)), coalesce.Config{
		Dir: filepath.Join(cfg.DataDir, "coalesce-spool"), MaxBytes: int64(cfg.Coalesce.SpoolSize), TTL: cfg.Coalesce.TTL,
		Wildcard: cfg.Coalesce.Wildcard,
	}, coalesce.WithPolicy(pol), coalesce.WithAnnouncer(router), coalesce.WithLogger(log), coalesce.WithMetrics(mt))
	if err != nil {
		return nil, routing.Peer{}, err
	}
	if cfg.Registries != "" {
		go watchUpstream(ctx, cfg.Registries, c, log)
	}
	ip := hostIP(cfg.RegistryAddr)
	if !ip.IsValid() {
		ip = netip.MustParseAddr("127.0.0.1") // a wildcard listener answers on loopback
	}
	return c, routing.Peer{ID: router.ID().String(), Addr: netip.AddrPortFrom(ip, port), Scheme: scheme}, nil
}

// watchUpstream gives co a new upstream client, over the new endpoints,
// TLS settings and credentials, each time the registries.yaml at path
// changes, until ctx is done. A file that fails to load keeps the last good
// client. Fetches in flight finish with the client they started with.
func watchUpstream(ctx context.Context, path string, co *coalesce.Coalescer, log *slog.Logger) {
	err := config.WatchRegistries(ctx, path, config.DefaultDebounce, func(r *config.Registries, _ []config.Warning, err error) {
		if err != nil {
			log.Error("registries.yaml reload failed; upstream fetches for peers keep the last good endpoints and credentials", "file", path, "err", err)
			return
		}
		co.SetUpstream(upstream.New(r, upstream.WithLogger(log)))
		log.Info("registries.yaml reloaded: upstream fetches for peers use its endpoints and credentials", "file", path)
	})
	if err != nil && ctx.Err() == nil {
		log.Error("registries.yaml watch for upstream fetches stopped", "err", err)
	}
}

// sizeFlag is a byte count written as 10GiB, 512MiB, 64KiB or plain bytes.
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }

func (s *sizeFlag) Set(v string) error {
	mult := int64(1)
	num := strings.TrimSpace(v)
	for _, u := range []struct {
		suffix string
		n      int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.n
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return fmt.Errorf("size %q: want a byte count such as 10GiB, 512MiB or 1048576", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}
