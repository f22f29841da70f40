package config

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
)

// DefaultDialTimeout is the dial_timeout written for the local sluice: a
// node whose sluice is down costs containerd at most this per pull before it
// moves on.
const DefaultDialTimeout = 500 * time.Millisecond

// DefaultHostsDir is where containerd (config_path) usually reads hosts.toml.
const DefaultHostsDir = "/etc/containerd/certs.d"

// HostsFile is the file name containerd reads in each host directory.
const HostsFile = "hosts.toml"

// header starts every file sluice writes.
const header = "# Written by sluice configure; edits are overwritten.\n" +
	"# `sluice configure --restore` puts back what was here before.\n"

// HostsOptions says what WriteHosts writes.
type HostsOptions struct {
	// Registries is the parsed registries.yaml. Required.
	Registries *Registries
	// HostsDir is containerd's hosts directory (config_path). Required.
	HostsDir string
	// Mirror is the URL of the local sluice, e.g. http://127.0.0.1:5000.
	// Required.
	Mirror string
	// MirrorTLS is the CA and client certificate containerd uses for an
	// https Mirror. When empty, Registries.Configs[mirror host].tls is used.
	MirrorTLS TLSConfig
	// DisableDefaultEndpoint stops containerd from falling back to the
	// upstream registry: the last listed host becomes `server`.
	DisableDefaultEndpoint bool
	// DialTimeout is the dial_timeout of the local sluice; 0 means
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// DryRun computes the changes and their diff without touching the disk.
	DryRun bool
}

// hostFields are the per-host keys of containerd's hosts.toml
// (core/remotes/docker/config/hosts.go, hostFileConfig).
type hostFields struct {
	Capabilities []string `toml:"capabilities,omitempty"`
	CA           string   `toml:"ca,omitempty"`
	// Client is a file holding cert and key (string) or [[cert, key]].
	Client       any    `toml:"client,omitempty"`
	SkipVerify   *bool  `toml:"skip_verify,omitempty"`
	OverridePath bool   `toml:"override_path,omitempty"`
	DialTimeout  string `toml:"dial_timeout,omitempty"`
}

// rootFields is the top of hosts.toml: the default server and its settings.
type rootFields struct {
	Server string `toml:"server,omitempty"`
	hostFields
}

// hostEntry is one `[host."URL"]` table.
type hostEntry struct {
	url    string
	fields hostFields
}

var pullResolve = []string{"pull", "resolve"}

// HostDirName is the directory containerd looks up first for a registry:
// "*" is `_default`, and a port is written `host_port_` (containerd's
// hostDirectory form, which it tries before `host:port`).
func HostDirName(registry string) string {
	if registry == Wildcard {
		return "_default"
	}
	if i := strings.LastIndex(registry, ":"); i > 0 && !strings.HasSuffix(registry, "]") {
		return registry[:i] + "_" + registry[i+1:] + "_"
	}
	return registry
}

// UpstreamURL is the registry's own endpoint, as containerd would pick it:
// docker.io is https://registry-1.docker.io, a loopback host is plain http,
// anything else https. It is empty for "*".
func UpstreamURL(registry string) string {
	switch {
	case registry == Wildcard:
		return ""
	case registry == "docker.io":
		return "https://registry-1.docker.io"
	case isLoopbackHost(registry):
		if u, err := url.Parse("//" + registry); err == nil && (u.Port() == "" || u.Port() == "443") {
			return "https://" + registry
		}
		return "http://" + registry
	default:
		return "https://" + registry
	}
}

// RenderHosts renders the hosts.toml of every mirrored registry. The keys
// are paths relative to HostsDir, e.g. "docker.io/hosts.toml".
func RenderHosts(opts HostsOptions) (map[string][]byte, []Warning, error) {
	if opts.Registries == nil {
		return nil, nil, errors.New("render hosts: no registries")
	}
	mirror, err := mirrorEntry(opts)
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]byte{}
	var warnings []Warning
	for _, reg := range opts.Registries.Mirrors() {
		m := opts.Registries.Mirrored[reg]
		if len(m.Rewrites) > 0 {
			warnings = append(warnings, Warning{File: opts.Registries.file, Key: join("mirrors", reg) + ".rewrite",
				Message: "containerd hosts.toml has no rewrite: endpoints receive the original repository name"})
		}
		b, err := renderRegistry(opts, reg, m, mirror)
		if err != nil {
			return nil, nil, fmt.Errorf("render hosts for %s: %w", reg, err)
		}
		out[path.Join(HostDirName(reg), HostsFile)] = b
	}
	for _, host := range sortedKeys(opts.Registries.Configs) {
		if opts.Registries.Configs[host].Auth != nil {
			warnings = append(warnings, Warning{File: opts.Registries.file, Key: join("configs", host) + ".auth",
				Message: "containerd hosts.toml has no credentials: give them to the CRI plugin or kubelet"})
		}
	}
	return out, warnings, nil
}

func mirrorEntry(opts HostsOptions) (hostEntry, error) {
	u, err := url.Parse(opts.Mirror)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return hostEntry{}, fmt.Errorf("mirror URL %q: want http(s)://host:port", opts.Mirror)
	}
	timeout := opts.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	e := hostEntry{url: strings.TrimSuffix(u.String(), "/"), fields: hostFields{
		Capabilities: pullResolve,
		DialTimeout:  timeout.String(),
	}}
	if u.Scheme == "https" {
		t := opts.MirrorTLS
		if t == (TLSConfig{}) {
			if cfg, ok := opts.Registries.Configs[u.Host]; ok && cfg.TLS != nil {
				t = *cfg.TLS
			}
		}
		applyTLS(&e.fields, &t)
	}
	return e, nil
}

func renderRegistry(opts HostsOptions, reg string, m Mirror, mirror hostEntry) ([]byte, error) {
	hosts := []hostEntry{mirror}
	seen := map[string]bool{mirror.url: true}
	for _, ep := range m.Endpoints {
		e, err := endpointEntry(opts.Registries, ep)
		if err != nil {
			return nil, err
		}
		if seen[e.url] {
			continue
		}
		seen[e.url] = true
		hosts = append(hosts, e)
	}
	var root rootFields
	upstream := UpstreamURL(reg)
	switch {
	case opts.DisableDefaultEndpoint:
		// Without a server, containerd would add the upstream itself: the
		// last host becomes the server so nothing follows it.
		last := hosts[len(hosts)-1]
		hosts = hosts[:len(hosts)-1]
		root = rootFields{Server: last.url, hostFields: last.fields}
	case upstream == "":
		// "*": containerd fills in the registry asked for.
		applyTLS(&root.hostFields, configTLS(opts.Registries, Wildcard))
	default:
		if len(hosts) > 1 && sameEndpoint(hosts[len(hosts)-1].url, upstream) {
			hosts = hosts[:len(hosts)-1]
		}
		root.Server = upstream
		applyTLS(&root.hostFields, configTLS(opts.Registries, reg))
	}
	return marshalHosts(root, hosts)
}

func endpointEntry(r *Registries, ep string) (hostEntry, error) {
	u, err := parseEndpoint(ep)
	if err != nil {
		return hostEntry{}, err
	}
	e := hostEntry{fields: hostFields{Capabilities: pullResolve}}
	switch p := strings.TrimSuffix(u.Path, "/"); p {
	case "", "/v2":
		u.Path = "/v2"
	default:
		// k3s: an explicit path other than /v2 is the API root.
		u.Path = p
		e.fields.OverridePath = true
	}
	e.url = u.String()
	applyTLS(&e.fields, configTLS(r, u.Host))
	return e, nil
}

// sameEndpoint compares an endpoint URL with the upstream URL.
func sameEndpoint(endpoint, upstream string) bool {
	return strings.TrimSuffix(endpoint, "/v2") == upstream
}

// configTLS is configs[host].tls, or configs["*"].tls, or nil.
func configTLS(r *Registries, host string) *TLSConfig {
	for _, h := range []string{host, Wildcard} {
		if cfg, ok := r.Configs[h]; ok && cfg.TLS != nil {
			return cfg.TLS
		}
	}
	return nil
}

func applyTLS(f *hostFields, t *TLSConfig) {
	if t == nil {
		return
	}
	f.CA = t.CAFile
	switch {
	case t.CertFile != "" && t.KeyFile != "":
		f.Client = [][2]string{{t.CertFile, t.KeyFile}}
	case t.CertFile != "":
		f.Client = t.CertFile
	}
	if t.InsecureSkipVerify {
		skip := true
		f.SkipVerify = &skip
	}
}

// marshalHosts writes the root keys, then one table per host in order
// (containerd tries them in file order). go-toml sorts map keys, so each
// table body is marshalled on its own under a header naming the URL.
func marshalHosts(root rootFields, hosts []hostEntry) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString(header)
	b, err := toml.Marshal(root)
	if err != nil {
		return nil, fmt.Errorf("marshal hosts.toml: %w", err)
	}
	buf.Write(b)
	for _, h := range hosts {
		key, err := tomlKey(h.url)
		if err != nil {
			return nil, err
		}
		b, err := toml.Marshal(h.fields)
		if err != nil {
			return nil, fmt.Errorf("marshal hosts.toml: %w", err)
		}
		buf.WriteString("\n[host." + key + "]\n")
		buf.Write(b)
	}
	return buf.Bytes(), nil
}

// tomlKey quotes a URL as a TOML basic-string key. URLs from url.URL.String
// are escaped already; anything needing TOML escapes is refused.
func tomlKey(s string) (string, error) {
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == '"' || r == '\\' {
			return "", fmt.Errorf("host URL %q cannot be a hosts.toml key", s)
		}
	}
	return `"` + s + `"`, nil
}
