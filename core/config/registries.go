package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"

	"sigs.k8s.io/yaml"
)

// Wildcard is the mirrors key that enables every registry. In hosts.toml
// terms it is the `_default` host directory.
const Wildcard = "*"

// Registries is a parsed k3s/RKE2 registries.yaml.
type Registries struct {
	// Mirrored maps a registry host (or "*") to its mirror settings. A
	// registry present here is shared between nodes, with or without
	// endpoints.
	Mirrored map[string]Mirror `json:"mirrors,omitempty"`
	// Configs maps a registry or endpoint host to its auth and TLS settings.
	Configs map[string]RegistryConfig `json:"configs,omitempty"`

	// file is the name the registries were parsed from, for messages.
	file string
}

// Mirror is one entry of `mirrors`.
type Mirror struct {
	// Endpoints are tried, in order, after the local sluice and before the
	// upstream registry.
	Endpoints []string `json:"endpoint,omitempty"`
	// Rewrites maps a regular expression on the repository name to its
	// replacement (k3s semantics). Stock containerd cannot apply them; see
	// README.md.
	Rewrites map[string]string `json:"rewrite,omitempty"`
}

// RegistryConfig is one entry of `configs`.
type RegistryConfig struct {
	Auth *AuthConfig `json:"auth,omitempty"`
	TLS  *TLSConfig  `json:"tls,omitempty"`
}

// AuthConfig holds registry credentials. containerd's hosts.toml has no
// place for them, so sluice parses them but never writes them.
type AuthConfig struct {
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	Auth          string `json:"auth,omitempty"`
	IdentityToken string `json:"identity_token,omitempty"`
}

// TLSConfig is the TLS client configuration for one host.
type TLSConfig struct {
	CAFile             string `json:"ca_file,omitempty"`
	CertFile           string `json:"cert_file,omitempty"`
	KeyFile            string `json:"key_file,omitempty"`
	InsecureSkipVerify bool   `json:"insecure_skip_verify,omitempty"`
}

// Warning is a problem that does not stop the file from being used, such as
// an unknown key.
type Warning struct {
	File    string
	Key     string
	Message string
}

func (w Warning) String() string {
	if w.Key == "" {
		return w.File + ": " + w.Message
	}
	return w.File + ": " + w.Key + ": " + w.Message
}

// FieldError is a refused value: File and Key (a path such as
// `mirrors."docker.io".endpoint[0]`) say where it is.
type FieldError struct {
	File string
	Key  string
	Err  error
}

func (e *FieldError) Error() string {
	if e.Key == "" {
		return e.File + ": " + e.Err.Error()
	}
	return e.File + ": " + e.Key + ": " + e.Err.Error()
}

func (e *FieldError) Unwrap() error { return e.Err }

// Mirrors returns the mirrored registries, sorted, with "*" when the
// wildcard is present. This is the policy input `mirrors`. A file without
// mirrors gives an empty, non-nil list: the node shares nothing.
func (r *Registries) Mirrors() []string {
	out := make([]string, 0)
	if r == nil {
		return out
	}
	for host := range r.Mirrored {
		out = append(out, host)
	}
	slices.Sort(out)
	return out
}

// HasWildcard reports whether "*" is mirrored.
func (r *Registries) HasWildcard() bool {
	if r == nil {
		return false
	}
	_, ok := r.Mirrored[Wildcard]
	return ok
}

// ParseRegistries parses registries.yaml content. name is used in messages
// only; the file system is not touched (LoadRegistries also resolves and
// checks certificate files).
func ParseRegistries(name string, data []byte) (*Registries, []Warning, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, nil, &FieldError{File: name, Err: fmt.Errorf("invalid YAML: %w", err)}
	}
	var doc any
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	if err := dec.Decode(&doc); err != nil {
		return nil, nil, &FieldError{File: name, Err: fmt.Errorf("invalid YAML: %w", err)}
	}
	c := checker{file: name}
	reg := c.document(doc)
	if c.err != nil {
		return nil, c.warnings, c.err
	}
	reg.file = name
	return reg, c.warnings, nil
}

// LoadRegistries reads, parses and checks a registries.yaml. Relative
// certificate paths are resolved against the file's directory (containerd
// would resolve them against each host directory instead), and every
// certificate file must exist.
func LoadRegistries(path string) (*Registries, []Warning, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read registries file: %w", err)
	}
	reg, warnings, err := ParseRegistries(path, data)
	if err != nil {
		return nil, warnings, err
	}
	base, err := filepath.Abs(filepath.Dir(path))
	if err != nil {
		return nil, warnings, fmt.Errorf("registries file %s: %w", path, err)
	}
	if err := reg.resolveFiles(path, base); err != nil {
		return nil, warnings, err
	}
	return reg, warnings, nil
}

// resolveFiles makes certificate paths absolute and checks they are
// readable files.
func (r *Registries) resolveFiles(file, base string) error {
	for _, host := range sortedKeys(r.Configs) {
		cfg := r.Configs[host]
		if cfg.TLS == nil {
			continue
		}
		t := *cfg.TLS
		for _, f := range []struct {
			key string
			p   *string
		}{{"ca_file", &t.CAFile}, {"cert_file", &t.CertFile}, {"key_file", &t.KeyFile}} {
			if *f.p == "" {
				continue
			}
			if !filepath.IsAbs(*f.p) {
				*f.p = filepath.Join(base, *f.p)
			}
			key := join("configs", host) + ".tls." + f.key
			st, err := os.Stat(*f.p)
			if err != nil {
				return &FieldError{File: file, Key: key, Err: err}
			}
			if st.IsDir() {
				return &FieldError{File: file, Key: key, Err: fmt.Errorf("%s is a directory", *f.p)}
			}
		}
		cfg.TLS = &t
		r.Configs[host] = cfg
	}
	return nil
}

// compiledRewrites returns the rewrites of a mirror compiled, in sorted
// pattern order. Patterns were checked when parsing.
func (m Mirror) compiledRewrites() []*regexp.Regexp {
	var out []*regexp.Regexp
	for _, p := range sortedKeys(m.Rewrites) {
		out = append(out, regexp.MustCompile(p))
	}
	return out
}

// Rewrite applies the first matching rewrite (patterns in sorted order) to
// a repository name and reports whether one matched.
func (m Mirror) Rewrite(repository string) (string, bool) {
	for _, re := range m.compiledRewrites() {
		if re.MatchString(repository) {
			return re.ReplaceAllString(repository, m.Rewrites[re.String()]), true
		}
	}
	return repository, false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
