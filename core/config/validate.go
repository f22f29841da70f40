package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// checker walks the generic document (YAML turned into JSON) and builds a
// Registries, so that a wrong type is reported with its full key path and an
// unknown key becomes a warning instead of an error. It stops at the first
// error.
type checker struct {
	file     string
	warnings []Warning
	err      error
}

func (c *checker) fail(key string, format string, args ...any) {
	if c.err == nil {
		c.err = &FieldError{File: c.file, Key: key, Err: fmt.Errorf(format, args...)}
	}
}

func (c *checker) warn(key, msg string) {
	c.warnings = append(c.warnings, Warning{File: c.file, Key: key, Message: msg})
}

// object returns v as an object; null is an empty object.
func (c *checker) object(key string, v any) (map[string]any, bool) {
	switch t := v.(type) {
	case nil:
		return nil, true
	case map[string]any:
		return t, true
	default:
		c.fail(key, "expected a mapping, got %s", typeName(v))
		return nil, false
	}
}

func (c *checker) str(key string, v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	default:
		c.fail(key, "expected a string, got %s", typeName(v))
		return ""
	}
}

func (c *checker) boolean(key string, v any) bool {
	switch t := v.(type) {
	case nil:
		return false
	case bool:
		return t
	default:
		c.fail(key, "expected a boolean, got %s", typeName(v))
		return false
	}
}

func (c *checker) unknown(prefix string, obj map[string]any, known ...string) {
	for _, k := range sortedKeys(obj) {
		if !slices.Contains(known, k) {
			c.warn(join(prefix, k), "unknown key, ignored")
		}
	}
}

func (c *checker) document(doc any) *Registries {
	reg := &Registries{}
	root, ok := c.object("", doc)
	if !ok {
		return nil
	}
	c.unknown("", root, "mirrors", "configs")
	mirrors, _ := c.object("mirrors", root["mirrors"])
	for _, host := range sortedKeys(mirrors) {
		key := join("mirrors", host)
		if err := checkRegistryHost(host); err != nil {
			c.fail(key, "%w", err)
			break
		}
		m := c.mirror(key, mirrors[host])
		if reg.Mirrored == nil {
			reg.Mirrored = map[string]Mirror{}
		}
		reg.Mirrored[host] = m
	}
	configs, _ := c.object("configs", root["configs"])
	for _, host := range sortedKeys(configs) {
		key := join("configs", host)
		if host != Wildcard {
			if err := checkRegistryHost(host); err != nil {
				c.fail(key, "%w", err)
				break
			}
		}
		if reg.Configs == nil {
			reg.Configs = map[string]RegistryConfig{}
		}
		reg.Configs[host] = c.config(key, configs[host])
	}
	if c.err != nil {
		return nil
	}
	return reg
}

func (c *checker) mirror(key string, v any) Mirror {
	var m Mirror
	obj, ok := c.object(key, v)
	if !ok {
		return m
	}
	c.unknown(key, obj, "endpoint", "rewrite")
	switch eps := obj["endpoint"].(type) {
	case nil:
	case []any:
		for i, e := range eps {
			ekey := fmt.Sprintf("%s.endpoint[%d]", key, i)
			s := c.str(ekey, e)
			if c.err != nil {
				return m
			}
			if _, err := parseEndpoint(s); err != nil {
				c.fail(ekey, "%w", err)
				return m
			}
			m.Endpoints = append(m.Endpoints, s)
		}
	default:
		c.fail(key+".endpoint", "expected a list of URLs, got %s", typeName(eps))
		return m
	}
	rw, ok := c.object(key+".rewrite", obj["rewrite"])
	if !ok {
		return m
	}
	for _, pattern := range sortedKeys(rw) {
		rkey := join(key+".rewrite", pattern)
		if _, err := regexp.Compile(pattern); err != nil {
			c.fail(rkey, "invalid regular expression: %w", err)
			return m
		}
		repl := c.str(rkey, rw[pattern])
		if m.Rewrites == nil {
			m.Rewrites = map[string]string{}
		}
		m.Rewrites[pattern] = repl
	}
	return m
}

func (c *checker) config(key string, v any) RegistryConfig {
	var rc RegistryConfig
	obj, ok := c.object(key, v)
	if !ok {
		return rc
	}
	c.unknown(key, obj, "auth", "tls")
	if a, ok := c.object(key+".auth", obj["auth"]); ok && a != nil {
		akey := key + ".auth"
		c.unknown(akey, a, "username", "password", "auth", "identity_token")
		rc.Auth = &AuthConfig{
			Username:      c.str(akey+".username", a["username"]),
			Password:      c.str(akey+".password", a["password"]),
			Auth:          c.str(akey+".auth", a["auth"]),
			IdentityToken: c.str(akey+".identity_token", a["identity_token"]),
		}
	}
	if t, ok := c.object(key+".tls", obj["tls"]); ok && t != nil {
		tkey := key + ".tls"
		c.unknown(tkey, t, "ca_file", "cert_file", "key_file", "insecure_skip_verify")
		rc.TLS = &TLSConfig{
			CAFile:             c.str(tkey+".ca_file", t["ca_file"]),
			CertFile:           c.str(tkey+".cert_file", t["cert_file"]),
			KeyFile:            c.str(tkey+".key_file", t["key_file"]),
			InsecureSkipVerify: c.boolean(tkey+".insecure_skip_verify", t["insecure_skip_verify"]),
		}
		if rc.TLS.KeyFile != "" && rc.TLS.CertFile == "" {
			c.fail(tkey+".key_file", "key_file needs cert_file")
		}
	}
	return rc
}

// checkRegistryHost accepts "host" or "host:port" as used in image
// references (docker.io, registry.k8s.io, mirror.example.com:5000, [::1]:5000).
func checkRegistryHost(host string) error {
	if host == Wildcard {
		return nil
	}
	if host == "" || strings.ContainsAny(host, "/@?#* \t") {
		return fmt.Errorf("%q is not a registry host (want host or host:port, no scheme or path)", host)
	}
	u, err := url.Parse("//" + host)
	if err != nil || u.Host != host || u.Hostname() == "" {
		return fmt.Errorf("%q is not a registry host (want host or host:port)", host)
	}
	if h := u.Hostname(); net.ParseIP(h) == nil && !hostnameRE.MatchString(h) {
		return fmt.Errorf("%q is not a valid host name", host)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%q has an invalid port", host)
		}
	} else if strings.HasSuffix(host, ":") {
		return fmt.Errorf("%q has an empty port", host)
	}
	return nil
}

// hostnameRE is a DNS name (underscores allowed, as some private networks
// use them).
var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?(\.[A-Za-z0-9_]([A-Za-z0-9_-]*[A-Za-z0-9_])?)*$`)

// parseEndpoint parses an endpoint URL; a URL without scheme is https, as in
// k3s.
func parseEndpoint(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("empty endpoint URL")
	}
	raw := s
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid endpoint URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("endpoint %q: scheme must be http or https", s)
	}
	if u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("endpoint %q: want scheme://host[:port][/path]", s)
	}
	if err := checkRegistryHost(u.Host); err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", s, err)
	}
	return u, nil
}

func typeName(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		return fmt.Sprintf("string %q", t)
	case bool:
		return fmt.Sprintf("boolean %t", t)
	case json.Number:
		return "number " + t.String()
	case []any:
		return "a list"
	case map[string]any:
		return "a mapping"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// join appends a key to a path, quoting it when it is not a plain word.
func join(prefix, key string) string {
	k := key
	if !plainKey(key) {
		k = strconv.Quote(key)
	}
	if prefix == "" {
		return k
	}
	return prefix + "." + k
}

func plainKey(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r == '-' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// isLoopbackHost reports whether host (with optional port) is localhost or a
// loopback IP, the hosts containerd talks plain HTTP to by default.
func isLoopbackHost(host string) bool {
	h := host
	if sh, _, err := net.SplitHostPort(host); err == nil {
		h = sh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(strings.Trim(h, "[]"))
	return ip != nil && ip.IsLoopback()
}
