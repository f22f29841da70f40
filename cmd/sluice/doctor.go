package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	ctr "github.com/containerd/containerd/v2/client"
	"github.com/containerd/containerd/v2/pkg/namespaces"

	"github.com/sluice-oci/sluice/core/config"
)

// check is one line of `sluice doctor`.
type check struct {
	Name   string `json:"name"`
	Status string `json:"status"` // ok, warn or FAIL
	Detail string `json:"detail"`
}

const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "FAIL"
)

func (c check) ok(format string, a ...any) check   { return c.with(statusOK, format, a...) }
func (c check) warn(format string, a ...any) check { return c.with(statusWarn, format, a...) }
func (c check) fail(format string, a ...any) check { return c.with(statusFail, format, a...) }
func (c check) with(status, format string, a ...any) check {
	c.Status, c.Detail = status, fmt.Sprintf(format, a...)
	return c
}

// doctorConfig is the flags of `sluice doctor`.
type doctorConfig struct {
	ContainerdConfig string
	HostsDir         string
	Mirror           string
	MirrorCA         string
	MirrorCert       string
	MirrorKey        string
	Store            string
	Namespace        string
	MetricsAddr      string
	P2PAddr          string
	JSON             bool
	Timeout          time.Duration
}

// doctorCmd is `sluice doctor`: it checks on a node that containerd reads
// the hosts directory sluice configure wrote, that the containerd socket
// and namespace hold images, and that the node's ports answer, and says
// what to fix. It fails when any check fails.
func doctorCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg doctorConfig
	fs := flag.NewFlagSet("sluice doctor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.ContainerdConfig, "containerd-config", "", "containerd's `config.toml` (default: the file the running daemon was started with, else the first of "+strings.Join(containerdConfigs(), ", ")+")")
	fs.StringVar(&cfg.HostsDir, "hosts-dir", config.DefaultHostsDir, "the hosts `directory` sluice configure wrote to")
	fs.StringVar(&cfg.Mirror, "mirror", "http://127.0.0.1:5000", "`URL` containerd reaches the local sluice at (its --local-addr or --registry-addr), as given to sluice configure")
	fs.StringVar(&cfg.MirrorCA, "mirror-ca", "", "CA `file` to verify an https --mirror")
	fs.StringVar(&cfg.MirrorCert, "mirror-cert", "", "client certificate `file` for an https --mirror")
	fs.StringVar(&cfg.MirrorKey, "mirror-key", "", "client key `file` for --mirror-cert")
	fs.StringVar(&cfg.Store, "store", "", "containerd:///path/to/containerd.sock, as given to sluice run (default: the first of "+strings.Join(containerdSockets(), ", ")+" that exists)")
	fs.StringVar(&cfg.Namespace, "containerd-namespace", "k8s.io", "containerd namespace sluice serves")
	fs.StringVar(&cfg.MetricsAddr, "metrics-addr", defaultMetricsAddr, "sluice run's --metrics-addr (host:port or URL)")
	fs.StringVar(&cfg.P2PAddr, "p2p-addr", "127.0.0.1:5001", "sluice run's --p2p-addr (host:port)")
	fs.BoolVar(&cfg.JSON, "json", false, "print the checks as JSON")
	fs.DurationVar(&cfg.Timeout, "timeout", 3*time.Second, "how long each check may take")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("doctor: unexpected arguments %q", fs.Args())
	}
	checks := runDoctor(ctx, cfg)
	if err := writeChecks(stdout, checks, cfg.JSON); err != nil {
		return err
	}
	failed := 0
	for _, c := range checks {
		if c.Status == statusFail {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("doctor: %d of %d checks failed", failed, len(checks))
	}
	return nil
}

func writeChecks(w io.Writer, checks []check, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Checks []check `json:"checks"`
		}{checks})
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, c := range checks {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.Status, c.Name, c.Detail)
	}
	return tw.Flush()
}

// runDoctor runs every check, in the order an operator fixes them.
func runDoctor(ctx context.Context, cfg doctorConfig) []check {
	var checks []check
	d := ctrdFacts{}
	sock, c := doctorSocket(cfg.Store)
	if c.Status == "" {
		d, checks = checkContainerd(ctx, sock, cfg.Namespace, cfg.Timeout)
	} else {
		checks = append(checks, c)
	}
	file, how := cfg.ContainerdConfig, "--containerd-config"
	if file == "" {
		file, how = d.configFile, "the daemon's command line"
	}
	if file == "" {
		file, how = firstExisting(containerdConfigs(), sock), "found"
	}
	cc := check{Name: "containerd config"}
	hc, err := loadHostsConfig(ctx, file, d.major)
	switch {
	case file == "":
		checks = append(checks, cc.fail("no containerd config at %s: set --containerd-config", strings.Join(containerdConfigs(), " or ")))
	case err != nil:
		checks = append(checks, cc.fail("%v: fix the file or set --containerd-config", err))
	default:
		checks = append(checks, cc.ok("%s (version %d, from %s)", file, hc.Version, how))
		checks = append(checks, checkConfigPath(hc, cfg.HostsDir))
		cri := check{Name: "cri plugin"}
		switch {
		case d.major > 0 && !d.criLoaded && hc.Disabled != "":
			checks = append(checks, cri.warn("%s disables %s, so the kubelet's pulls do not read hosts.toml (ctr pulls with --hosts-dir still do): remove it from disabled_plugins", file, hc.Disabled))
		case d.major > 0 && !d.criLoaded:
			checks = append(checks, cri.warn("containerd has no CRI image plugin loaded, so the kubelet's pulls do not read hosts.toml: see containerd's log"))
		case d.major == 0 && hc.Disabled != "":
			checks = append(checks, cri.warn("%s disables %s, so the kubelet's pulls do not read hosts.toml: remove it from disabled_plugins", file, hc.Disabled))
		case d.criLoaded:
			checks = append(checks, cri.ok("containerd's CRI image plugin is loaded"))
		}
	}
	checks = append(checks, checkHostsFiles(ctx, hc.Roots, cfg.HostsDir, cfg.Mirror))
	checks = append(checks, checkRegistry(ctx, cfg))
	checks = append(checks, checkReadyz(ctx, cfg.MetricsAddr, cfg.Timeout))
	checks = append(checks, checkTCP(ctx, "p2p", cfg.P2PAddr, cfg.Timeout))
	return checks
}

// doctorSocket resolves --store to a containerd socket the way sluice run
// does; a non-empty check is a failure to report instead.
func doctorSocket(store string) (string, check) {
	c := check{Name: "containerd"}
	switch {
	case strings.HasPrefix(store, "containerd://"):
		return strings.TrimPrefix(store, "containerd://"), check{}
	case store != "":
		return "", c.warn("--store %s is not containerd: sluice serves no containerd here, so the containerd checks are skipped", store)
	}
	for _, p := range containerdSockets() {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&os.ModeSocket != 0 {
			return p, check{}
		}
	}
	return "", c.fail("no containerd socket at %s: set --store containerd:///path/to/containerd.sock", strings.Join(containerdSockets(), " or "))
}

// firstExisting is the first config file that exists, those of k3s/RKE2
// first when the socket is theirs.
func firstExisting(files []string, sock string) string {
	if strings.HasPrefix(sock, "/run/k3s/") {
		files = append(slices.Clone(files[1:]), files[0])
	}
	for _, f := range files {
		if _, err := os.Stat(f); err == nil {
			return f
		}
	}
	return ""
}

// ctrdFacts is what the daemon says about itself.
type ctrdFacts struct {
	major      int    // 0 when unknown
	configFile string // from its command line, "" when unknown
	criLoaded  bool   // the CRI image plugin is loaded
}

// checkContainerd connects to the socket and checks its version, the
// namespace and its images, and which config file the daemon reads.
func checkContainerd(ctx context.Context, sock, ns string, timeout time.Duration) (ctrdFacts, []check) {
	var f ctrdFacts
	c := check{Name: "containerd"}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		return f, []check{c.fail("no containerd socket at %s: is containerd running? set --store containerd:///path/to/containerd.sock", sock)}
	}
	ctx, cancel := context.WithTimeout(ctx, 2*timeout)
	defer cancel()
	client, err := ctr.New(sock, ctr.WithTimeout(timeout))
	if err != nil {
		return f, []check{c.fail("cannot connect to %s: %v: is containerd running? set --store containerd:///path/to/containerd.sock", sock, err)}
	}
	defer client.Close()
	v, err := client.Version(ctx)
	if err != nil {
		return f, []check{c.fail("%s does not answer: %v: set --store to containerd's socket", sock, err)}
	}
	f.major, _ = strconv.Atoi(strings.SplitN(strings.TrimPrefix(v.Version, "v"), ".", 2)[0])
	checks := []check{c.ok("containerd %s at %s", v.Version, sock)}

	nc := check{Name: "namespace"}
	names, err := client.NamespaceService().List(ctx)
	switch {
	case err != nil:
		checks = append(checks, nc.fail("list namespaces: %v", err))
	case !slices.Contains(names, ns):
		checks = append(checks, nc.fail("namespace %q does not exist (containerd has: %s): set --containerd-namespace, for sluice run too, to the namespace the kubelet pulls into", ns, strings.Join(names, ", ")))
	default:
		imgs, err := client.ImageService().List(namespaces.WithNamespace(ctx, ns))
		switch {
		case err != nil:
			checks = append(checks, nc.fail("list images in %q: %v", ns, err))
		case len(imgs) == 0:
			checks = append(checks, nc.warn("namespace %q holds no images: nothing to share until images are pulled or imported (sluice import)", ns))
		default:
			checks = append(checks, nc.ok("namespace %q holds %d images", ns, len(imgs)))
		}
	}

	if srv, err := client.IntrospectionService().Server(ctx); err == nil {
		f.configFile = daemonConfigFile(srv.Pid, srv.Pidns)
	}
	if ps, err := client.IntrospectionService().Plugins(ctx); err == nil {
		for _, p := range ps.Plugins {
			if p.InitErr == nil && (p.Type+"."+p.ID == criImagesPlugin || p.Type+"."+p.ID == criPluginV2) {
				f.criLoaded = true
			}
		}
	}
	return f, checks
}

// daemonConfigFile reads the config file the daemon was started with from
// its command line (containerd's default when it names none), "" when
// the daemon runs in another PID namespace or /proc cannot be read.
func daemonConfigFile(pid, pidns uint64) string {
	if pid == 0 {
		return ""
	}
	if own, err := os.Readlink("/proc/self/ns/pid"); err != nil || own != fmt.Sprintf("pid:[%d]", pidns) {
		return ""
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	for i, a := range args {
		for _, name := range []string{"--config", "-c"} {
			if a == name && i+1 < len(args) {
				return args[i+1]
			}
			if v, ok := strings.CutPrefix(a, name+"="); ok {
				return v
			}
		}
	}
	return "/etc/containerd/config.toml"
}

// checkRegistry: the mirror containerd tries first answers /v2/.
func checkRegistry(ctx context.Context, cfg doctorConfig) check {
	c := check{Name: "registry"}
	hc := &http.Client{Timeout: cfg.Timeout}
	if strings.HasPrefix(cfg.Mirror, "https://") {
		tc, err := doctorTLS(cfg)
		if err != nil {
			return c.fail("%v", err)
		}
		hc.Transport = &http.Transport{TLSClientConfig: tc}
	}
	u := strings.TrimSuffix(cfg.Mirror, "/") + "/v2/"
	code, body, err := get(ctx, hc, u)
	switch {
	case err != nil:
		return c.fail("nothing answers at %s: %v: start sluice run with --registry-addr or --local-addr matching --mirror (and sluice configure --mirror)", u, err)
	case code != http.StatusOK:
		return c.fail("%s answered %d %s: is that sluice?", u, code, body)
	}
	return c.ok("%s answers", u)
}

func doctorTLS(cfg doctorConfig) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.MirrorCA != "" {
		pem, err := os.ReadFile(cfg.MirrorCA)
		if err != nil {
			return nil, fmt.Errorf("--mirror-ca: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--mirror-ca %s: no PEM certificate", cfg.MirrorCA)
		}
	}
	if cfg.MirrorCert != "" {
		kp, err := tls.LoadX509KeyPair(cfg.MirrorCert, cfg.MirrorKey)
		if err != nil {
			return nil, fmt.Errorf("--mirror-cert: %w", err)
		}
		tc.Certificates = []tls.Certificate{kp}
	}
	return tc, nil
}

// checkReadyz: the metrics listener answers /readyz; a node that knows no
// peer, or is ready only because bootstrap found nobody else, is a warning
// (it serves its own content but finds nothing).
func checkReadyz(ctx context.Context, addr string, timeout time.Duration) check {
	c := check{Name: "readyz"}
	base := addr
	if !strings.Contains(base, "://") {
		base = "http://" + dialAddr(base)
	}
	u := strings.TrimSuffix(base, "/") + "/readyz"
	code, body, err := get(ctx, &http.Client{Timeout: timeout}, u)
	switch {
	case err != nil:
		return c.fail("nothing answers at %s: %v: set --metrics-addr to sluice run's --metrics-addr", u, err)
	case code == http.StatusServiceUnavailable:
		return c.warn("%s: %s: check --bootstrap and that peers reach this node's --p2p-addr", u, body)
	case code != http.StatusOK:
		return c.fail("%s answered %d %s: is that sluice's metrics listener?", u, code, body)
	case strings.Contains(body, "alone"):
		return c.warn("%s: ready but alone: no other node found: check --bootstrap if this is not a one-node cluster", u)
	}
	return c.ok("%s: ready", u)
}

// checkTCP: something accepts TCP connections at addr.
func checkTCP(ctx context.Context, name, addr string, timeout time.Duration) check {
	c := check{Name: name}
	a := dialAddr(addr)
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", a)
	if err != nil {
		return c.fail("%s does not accept connections: %v: set --p2p-addr to sluice run's --p2p-addr, and open the port to the other nodes", a, err)
	}
	_ = conn.Close()
	return c.ok("%s accepts connections", a)
}

// dialAddr turns a listen address into one to dial: an empty or
// unspecified host is loopback.
func dialAddr(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, port)
}

func get(ctx context.Context, hc *http.Client, u string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}
