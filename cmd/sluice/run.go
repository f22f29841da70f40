package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/sluice-oci/sluice/core/registry"
)

// runConfig is every setting of `sluice run`, from flags, SLUICE_* env and
// the --config YAML file (same keys as the flags).
type runConfig struct {
	Store, ContainerdNamespace         string
	RegistryAddr, LocalAddr, P2PAddr   string
	Bootstrap                          listFlag
	P2PAnnounce                        listFlag
	DataDir, Registries                string
	Policy                             listFlag
	PolicyVerificationKey              string
	PolicyFailOpen                     bool
	PolicyConfig                       string
	ResolveTimeout                     time.Duration
	DefaultRegistry                    string
	PSKFile, TLSCert, TLSKey, ClientCA string
	PeerCA                             string
	MetricsAddr, LogLevel, LogFormat   string
	NodeName                           string
	Config                             string
	MaxPeerFetches                     int
	PeerRateLimit                      int64
	PeerFetchParallel                  int
	PeerFetchMemory                    sizeFlag
	MaxPeerServes                      int
	ReadHeaderTimeout                  time.Duration
	ShutdownTimeout                    time.Duration
	Pprof                              bool
	Coalesce                           coalesceFlags // rollouts (coalesce.go)

	// sockets replaces containerdSockets() in tests.
	sockets []string
}

const (
	// minPeerFetchMemory is two multi-peer chunks of 4 MiB: the least a
	// multi-peer transfer runs with (core/mirror WithMultiPeerMemory).
	minPeerFetchMemory = 8 << 20
	defaultSocket      = "/run/containerd/containerd.sock"
	// defaultMetricsAddr is loopback: /status and /metrics are
	// unauthenticated (see RATIONALE.md).
	defaultMetricsAddr = "127.0.0.1:9090"
)

func runFlags(cfg *runConfig) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice run", flag.ContinueOnError)
	host, _ := os.Hostname()
	fs.StringVar(&cfg.Store, "store", "", "content store: containerd:///run/containerd/containerd.sock or oci:DIR (default: containerd when its socket exists, else the embedded oci store in --data-dir)")
	fs.StringVar(&cfg.ContainerdNamespace, "containerd-namespace", "k8s.io", "containerd namespace to serve")
	fs.StringVar(&cfg.RegistryAddr, "registry-addr", ":5000", "registry listen address (peers and local containerd)")
	fs.StringVar(&cfg.LocalAddr, "local-addr", "", "extra plain-HTTP loopback listener for the local containerd (e.g. 127.0.0.1:5002)")
	fs.StringVar(&cfg.P2PAddr, "p2p-addr", ":5001", "libp2p listen address")
	fs.Var(&cfg.P2PAnnounce, "p2p-announce", "extra address peers may reach this node's libp2p on, host:port or multiaddr (repeatable)")
	fs.Var(&cfg.Bootstrap, "bootstrap", "bootstrap peer: /ip4/…/tcp/…/p2p/ID or dns:NAME:PORT (repeatable)")
	fs.StringVar(&cfg.DataDir, "data-dir", "/var/lib/sluice", "state directory (peer key, embedded store)")
	fs.StringVar(&cfg.Registries, "registries", "", "k3s/RKE2 registries.yaml: its mirrors are the shared registries (default: share all)")
	fs.Var(&cfg.Policy, "policy", "policy path: directory, OPA bundle .tar.gz, .rego, data .json/.yaml or .wasm (repeatable; default: the shipped k3s policy)")
	fs.StringVar(&cfg.PolicyVerificationKey, "policy-verification-key", "", "public key (PEM) that OPA bundles must be signed with")
	fs.BoolVar(&cfg.Pprof, "pprof", false, "serve Go's /debug/pprof/ profiles on the metrics listener (which must then be on loopback)")
	fs.BoolVar(&cfg.PolicyFailOpen, "policy-fail-open", false, "treat a policy engine error as allow instead of deny")
	fs.StringVar(&cfg.PolicyConfig, "policy-config", "", "OPA configuration file: bundles from a bundle service or OCI registry (ANDed with --policy), decision_logs, status")
	fs.DurationVar(&cfg.ResolveTimeout, "resolve-timeout", 50*time.Millisecond, "how long to look for peers before answering 404 (a miss ends sooner when the DHT lookup does; see RATIONALE.md)")
	fs.StringVar(&cfg.DefaultRegistry, "default-registry", "docker.io", "registry of requests without ?ns=")
	fs.StringVar(&cfg.PSKFile, "psk-file", "", "pre-shared key file (32 bytes, hex or raw) for the libp2p private network")
	fs.StringVar(&cfg.TLSCert, "tls-cert", "", "this node's certificate (registry API over TLS)")
	fs.StringVar(&cfg.TLSKey, "tls-key", "", "this node's private key")
	fs.StringVar(&cfg.ClientCA, "client-ca", "", "CA that signs the client certificates of peers allowed to fetch")
	fs.StringVar(&cfg.PeerCA, "peer-ca", "", "CA that signs the certificates of peers this node fetches from")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", defaultMetricsAddr, "metrics, health and status listen address; loopback by default, set :9090 to let Prometheus scrape it (empty: off)")
	fs.StringVar(&cfg.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&cfg.LogFormat, "log-format", "text", "text or json")
	fs.StringVar(&cfg.NodeName, "node-name", host, "node name in policy input and logs")
	fs.StringVar(&cfg.Config, "config", "", "YAML file with the same keys as these flags")
	fs.IntVar(&cfg.MaxPeerFetches, "max-peer-fetches", 64, "concurrent blob fetches from peers")
	fs.Int64Var(&cfg.PeerRateLimit, "peer-rate-limit", 0, "bytes per second this node sends to peers, all together (0: no limit)")
	fs.IntVar(&cfg.PeerFetchParallel, "peer-fetch-parallel", 3, "providers a large blob (≥ 8 MiB) is fetched from at once, in ranges (1: one at a time)")
	cfg.PeerFetchMemory = 128 << 20
	fs.Var(&cfg.PeerFetchMemory, "peer-fetch-memory", "chunk buffers of all multi-peer transfers together, e.g. 128MiB (at least 8MiB; a transfer that finds no room fetches from one provider)")
	fs.IntVar(&cfg.MaxPeerServes, "max-peer-serves", registry.DefaultMaxPeerServes, "blob transfers this node serves to peers at once; past it a peer is answered 503 and asks another provider or the upstream (0: no cap)")
	fs.DurationVar(&cfg.ReadHeaderTimeout, "read-header-timeout", 5*time.Second, "time a client has to send its request headers")
	fs.DurationVar(&cfg.ShutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long in-flight transfers may run before they are cut (a second signal exits at once)")
	cfg.Coalesce.register(fs)
	return fs
}

func parseRunConfig(args []string, stderr io.Writer) (*runConfig, error) {
	cfg := &runConfig{}
	fs := runFlags(cfg)
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if err := applyEnvAndFile(fs); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// validate rejects values the node cannot run with, naming the flag: a
// zero --max-peer-fetches would block every peer fetch forever and a
// negative one would panic.
func (cfg *runConfig) validate() error {
	var errs []error
	if cfg.ResolveTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--resolve-timeout %s: must be positive", cfg.ResolveTimeout))
	}
	if cfg.MaxPeerFetches < 1 {
		errs = append(errs, fmt.Errorf("--max-peer-fetches %d: must be at least 1", cfg.MaxPeerFetches))
	}
	if cfg.PeerRateLimit < 0 {
		errs = append(errs, fmt.Errorf("--peer-rate-limit %d: must be 0 (no limit) or positive", cfg.PeerRateLimit))
	}
	if cfg.PeerFetchParallel < 1 {
		errs = append(errs, fmt.Errorf("--peer-fetch-parallel %d: must be at least 1", cfg.PeerFetchParallel))
	}
	if cfg.PeerFetchMemory < minPeerFetchMemory {
		errs = append(errs, fmt.Errorf("--peer-fetch-memory %d: must be at least 8MiB (two 4 MiB chunks); --peer-fetch-parallel 1 turns multi-peer transfers off", cfg.PeerFetchMemory))
	}
	if cfg.MaxPeerServes < 0 {
		errs = append(errs, fmt.Errorf("--max-peer-serves %d: must be 0 (no cap) or positive", cfg.MaxPeerServes))
	}
	if cfg.ReadHeaderTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--read-header-timeout %s: must be positive", cfg.ReadHeaderTimeout))
	}
	if cfg.ShutdownTimeout <= 0 {
		errs = append(errs, fmt.Errorf("--shutdown-timeout %s: must be positive", cfg.ShutdownTimeout))
	}
	if cfg.Pprof && !isLoopbackAddr(cfg.MetricsAddr) {
		errs = append(errs, fmt.Errorf("--pprof needs a loopback --metrics-addr, not %q: profiles show the heap and a CPU profile costs CPU to anyone who asks", cfg.MetricsAddr))
	}
	if err := cfg.Coalesce.validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

// containerdSockets are the sockets --store defaults to, in order: stock
// containerd (kubeadm, most distributions), then the containerd that k3s
// and RKE2 embed.
func containerdSockets() []string {
	return []string{defaultSocket, "/run/k3s/containerd/containerd.sock"}
}

// storeURI resolves the --store default: containerd at the first of the
// known sockets that exists, else the embedded oci store in the data dir.
// why says how the choice was made, for the start-up log.
func (cfg *runConfig) storeURI() (uri, why string) {
	if cfg.Store != "" {
		return cfg.Store, "--store"
	}
	socks := cfg.sockets
	if socks == nil {
		socks = containerdSockets()
	}
	var found []string
	for _, p := range socks {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return "oci:" + filepath.Join(cfg.DataDir, "oci"),
			"no containerd socket at " + strings.Join(socks, " or ") + ": using the embedded oci store, empty until images are imported; set --store containerd:///path/to/containerd.sock to serve a containerd"
	case 1:
		return "containerd://" + found[0], "found containerd socket " + found[0]
	}
	return "containerd://" + found[0], "found several containerd sockets (" + strings.Join(found, ", ") + "), using the first; set --store to choose"
}

// hostIP returns the IP a listen address binds, invalid for ":5000" or a
// host name.
func hostIP(addr string) netip.Addr {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return netip.Addr{}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.IsUnspecified() {
		return netip.Addr{}
	}
	return ip
}

// portOf returns the port of a listen address.
func portOf(addr string) (uint16, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(p, 10, 16)
	return uint16(n), err
}

func newHTTPServer(h http.Handler, cfg *runConfig, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

func isLoopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
