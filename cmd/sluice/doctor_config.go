package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	srvconfig "github.com/containerd/containerd/v2/cmd/containerd/server/config"
	ctdhosts "github.com/containerd/containerd/v2/core/remotes/docker/config"
	"github.com/containerd/errdefs"
	"github.com/containerd/log"
	"github.com/pelletier/go-toml/v2"
	"github.com/sirupsen/logrus"

	"github.com/sluice-oci/sluice/core/config"
)

// The CRI plugin that owns registry.config_path: its id in version 2
// configs (containerd 1.x) and in version 3 and later (containerd 2.x).
const (
	criPluginV2     = "io.containerd.grpc.v1.cri"
	criImagesPlugin = "io.containerd.cri.v1.images"
)

// defaultConfigPath is containerd 2.x's config_path when a config sets
// neither config_path nor mirrors (plugins/cri/images on Linux).
const defaultConfigPath = "/etc/containerd/certs.d:/etc/docker/certs.d"

// containerdConfigs are the config files tried, in order, when neither
// --containerd-config nor the daemon's command line names one: stock
// containerd, then the files k3s and RKE2 generate for their containerd.
func containerdConfigs() []string {
	return []string{
		"/etc/containerd/config.toml",
		"/var/lib/rancher/k3s/agent/etc/containerd/config.toml",
		"/var/lib/rancher/rke2/agent/etc/containerd/config.toml",
	}
}

// hostsConfig is what a containerd config says about hosts directories.
type hostsConfig struct {
	File    string
	Version int
	// Key is the TOML table config_path is read from.
	Key string
	// ConfigPath is config_path as written ("" when unset).
	ConfigPath string
	// Roots are the hosts directories containerd reads, in order (the
	// default when config_path is unset on containerd 2.x).
	Roots []string
	// Problem, when set, is why containerd reads no hosts directory (or
	// not the one written), with what to change.
	Problem string
	// Disabled is the CRI plugin that owns config_path when the config
	// disables it.
	Disabled string
}

// criRegistry is the part of the CRI plugin config doctor reads.
type criRegistry struct {
	Registry struct {
		ConfigPath string         `toml:"config_path"`
		Mirrors    map[string]any `toml:"mirrors"`
	} `toml:"registry"`
}

// loadHostsConfig reads a containerd config file with containerd's own
// loader (imports merged, version 1 plugin names migrated) and finds the
// config_path the CRI plugin uses. ctrdMajor is the daemon's major version
// (0 when unknown): containerd 2.x defaults config_path, 1.x does not.
func loadHostsConfig(ctx context.Context, file string, ctrdMajor int) (hostsConfig, error) {
	hc := hostsConfig{File: file}
	// containerd's loader logs through logrus; doctor reports problems
	// itself.
	quiet := logrus.New()
	quiet.Out = io.Discard
	ctx = log.WithLogger(ctx, logrus.NewEntry(quiet))
	cfg := srvconfig.Config{Version: 2}
	if err := srvconfig.LoadConfig(ctx, file, &cfg); err != nil {
		return hc, fmt.Errorf("containerd config %s: %w", file, err)
	}
	hc.Version = cfg.Version
	v2, err := criPlugin(cfg.Plugins, criPluginV2)
	if err != nil {
		return hc, fmt.Errorf("containerd config %s: %w", file, err)
	}
	v3, err := criPlugin(cfg.Plugins, criImagesPlugin)
	if err != nil {
		return hc, fmt.Errorf("containerd config %s: %w", file, err)
	}
	owner, reg := criPluginV2, v2
	if cfg.Version >= 3 {
		owner, reg = criImagesPlugin, v3
		if reg.Registry.ConfigPath == "" && v2.Registry.ConfigPath != "" {
			hc.Key = fmt.Sprintf("plugins.%q.registry", criPluginV2)
			hc.ConfigPath = v2.Registry.ConfigPath
			hc.Problem = fmt.Sprintf("%s is a version %d config but sets config_path under %s, the version 2 table, which containerd ignores: move it to [plugins.%q.registry] and restart containerd",
				file, cfg.Version, hc.Key, criImagesPlugin)
			return hc, nil
		}
	}
	hc.Key = fmt.Sprintf("plugins.%q.registry", owner)
	hc.ConfigPath = reg.Registry.ConfigPath
	if slices.Contains(cfg.DisabledPlugins, owner) {
		hc.Disabled = owner
	}
	switch {
	case hc.ConfigPath != "":
		hc.Roots = filepath.SplitList(hc.ConfigPath)
	case len(reg.Registry.Mirrors) > 0:
		hc.Problem = fmt.Sprintf("%s sets the deprecated [%s.mirrors] and no config_path, so containerd reads no hosts directory: replace mirrors with config_path and restart containerd", file, hc.Key)
	case ctrdMajor >= 2 || (ctrdMajor == 0 && cfg.Version >= 3):
		hc.Roots = filepath.SplitList(defaultConfigPath)
	default:
		hc.Problem = fmt.Sprintf("%s sets no config_path and containerd 1.x then reads no hosts directory: set config_path under [%s] and restart containerd", file, hc.Key)
	}
	return hc, nil
}

// criPlugin decodes the registry table of one plugin's config.
func criPlugin(plugins map[string]any, id string) (criRegistry, error) {
	var out criRegistry
	raw, ok := plugins[id]
	if !ok {
		return out, nil
	}
	b, err := toml.Marshal(raw)
	if err != nil {
		return out, fmt.Errorf("plugins.%q: %w", id, err)
	}
	if err := toml.Unmarshal(b, &out); err != nil {
		return out, fmt.Errorf("plugins.%q: %w", id, err)
	}
	return out, nil
}

// checkConfigPath: does containerd read the hosts directory sluice
// configure wrote to?
func checkConfigPath(hc hostsConfig, hostsDir string) check {
	c := check{Name: "config_path"}
	if hc.Problem != "" {
		return c.fail("%s", hc.Problem)
	}
	want := filepath.Clean(hostsDir)
	i := slices.IndexFunc(hc.Roots, func(r string) bool { return filepath.Clean(r) == want })
	where := "config_path = " + strconvQuote(hc.ConfigPath) + " in " + hc.File
	if hc.ConfigPath == "" {
		where = "containerd's default " + strconvQuote(defaultConfigPath) + " (" + hc.File + " sets no config_path)"
	}
	if i < 0 {
		return c.fail("containerd reads hosts from %s (%s) but sluice configured %s: set config_path = %q under [%s] and restart containerd, or rerun sluice configure --hosts-dir %s",
			strings.Join(hc.Roots, ":"), where, hostsDir, hostsDir, hc.Key, hc.Roots[0])
	}
	return c.ok("containerd reads %s (%s)", hostsDir, where)
}

func strconvQuote(s string) string { return fmt.Sprintf("%q", s) }

// hostDirFromRoots finds a registry's hosts directory the way the CRI
// plugin does: the first root that has one wins.
func hostDirFromRoots(roots []string) func(string) (string, error) {
	return func(host string) (string, error) {
		for _, r := range roots {
			dir, err := ctdhosts.HostDirFromRoot(r)(host)
			if (err != nil && !errdefs.IsNotFound(err)) || dir != "" {
				return dir, err
			}
		}
		return "", nil
	}
}

// checkHostsFiles: every registry directory in hostsDir has a hosts.toml
// whose first host, as containerd's own loader reads it, is the sluice
// mirror, and no earlier root in config_path shadows it.
func checkHostsFiles(ctx context.Context, roots []string, hostsDir, mirror string) check {
	c := check{Name: "hosts.toml"}
	mu, err := url.Parse(mirror)
	if err != nil || mu.Scheme == "" || mu.Host == "" {
		return c.fail("--mirror %q: want a URL such as http://127.0.0.1:5000", mirror)
	}
	entries, err := os.ReadDir(hostsDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return c.fail("read %s: %v", hostsDir, err)
	}
	var regs []string
	for _, e := range entries {
		if !e.IsDir() || e.Name() == config.BackupDir || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		if _, err := os.Stat(filepath.Join(hostsDir, e.Name(), config.HostsFile)); err == nil {
			regs = append(regs, e.Name())
		}
	}
	if len(regs) == 0 {
		return c.fail("no %s under %s: run sluice configure --hosts-dir %s --mirror %s", config.HostsFile, hostsDir, hostsDir, mirror)
	}
	if !slices.ContainsFunc(roots, func(r string) bool { return filepath.Clean(r) == filepath.Clean(hostsDir) }) {
		roots = []string{hostsDir} // config_path is reported on its own line
	}
	lookup := hostDirFromRoots(roots)
	var bad []string
	for _, reg := range regs {
		dir, err := lookup(reg)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", reg, err))
			continue
		}
		if own := filepath.Join(hostsDir, reg); filepath.Clean(dir) != own {
			bad = append(bad, fmt.Sprintf("%s: containerd reads %s first, not %s: remove it or put %s first in config_path", reg, dir, own, hostsDir))
			continue
		}
		hosts, err := ctdhosts.ConfigureHosts(ctx, ctdhosts.HostOptions{HostDir: lookup})(reg)
		if err != nil {
			bad = append(bad, fmt.Sprintf("%s: %v", reg, err))
			continue
		}
		if len(hosts) == 0 || hosts[0].Scheme != mu.Scheme || hosts[0].Host != mu.Host {
			first := "no host"
			if len(hosts) > 0 {
				first = hosts[0].Scheme + "://" + hosts[0].Host
			}
			bad = append(bad, fmt.Sprintf("%s: first host is %s, not %s", reg, first, mirror))
		}
	}
	if len(bad) > 0 {
		return c.fail("%s: rerun sluice configure --hosts-dir %s --mirror %s", strings.Join(bad, "; "), hostsDir, mirror)
	}
	return c.ok("%d registries try %s first: %s", len(regs), mirror, strings.Join(regs, ", "))
}
