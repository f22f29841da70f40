package upstream

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"

	"github.com/containerd/containerd/v2/core/remotes/docker"

	"github.com/sluice-oci/sluice/core/config"
)

// Endpoint is one place a registry's content is asked for, in the order
// the client tries them: registries.yaml `mirrors.<registry>.endpoint`
// (or the `"*"` entry's), then the registry itself.
type Endpoint struct {
	// URL is the endpoint as an operator reads it: scheme://host, plus the
	// path when the endpoint named one other than /v2 (k3s and containerd's
	// override_path: that path is then the API root).
	URL string
	// Mirror is true for an endpoint that is not the registry itself;
	// containerd adds ?ns=<registry> to every request it sends there.
	Mirror bool
	// Credentials is true when `configs` gives credentials for the
	// endpoint's host: requests there may carry them.
	Credentials bool

	host docker.RegistryHost // without Authorizer: one is made per call
	auth *config.AuthConfig
}

// Upstream is the `upstream` field of the `fetch` policy input.
type Upstream struct {
	// Endpoint is the first endpoint the fetch tries.
	Endpoint string `json:"endpoint"`
	// Credentials is true when any endpoint the fetch may reach would be
	// sent credentials from registries.yaml.
	Credentials bool `json:"credentials"`
	// Explicit is true when registries.yaml lists the registry under
	// `mirrors` by name: not only matched by "*", and not a node without
	// registries.yaml. The registry name comes from whoever sent the
	// request (?ns=), so only an explicit one says the operator chose it.
	Explicit bool `json:"explicit"`
}

// endpoints builds the ordered endpoint list of a registry. Parsing follows
// sluice's own hosts.toml writer (core/config), so the client asks the same
// hosts, in the same order, with the same TLS as the node's containerd.
func (c *Client) endpoints(registry string) ([]Endpoint, error) {
	if registry == "" || registry == config.Wildcard {
		return nil, fmt.Errorf("upstream: no registry named %q", registry)
	}
	var mirrors []string
	if c.reg != nil {
		m, ok := c.reg.Mirrored[registry]
		if !ok {
			m = c.reg.Mirrored[config.Wildcard]
		}
		mirrors = m.Endpoints
	}
	own := config.UpstreamURL(registry)
	ownURL, err := url.Parse(own)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", registry, err)
	}
	var out []Endpoint
	seen := map[string]bool{}
	for i, raw := range mirrors {
		u, override, err := parseEndpoint(raw)
		if err != nil {
			return nil, fmt.Errorf("upstream %s: mirrors endpoint[%d]: %w", registry, i, err)
		}
		isOwn := u.Scheme == ownURL.Scheme && u.Host == ownURL.Host && !override
		e, err := c.endpoint(registry, u, override, !isOwn)
		if err != nil {
			return nil, err
		}
		if !seen[e.URL] {
			seen[e.URL] = true
			out = append(out, e)
		}
	}
	e, err := c.endpoint(registry, ownURL, false, false)
	if err != nil {
		return nil, err
	}
	if !seen[e.URL] {
		out = append(out, e)
	}
	return out, nil
}

// parseEndpoint parses a registries.yaml endpoint: https is the default
// scheme; a path other than "", "/" and "/v2" is the API root as given.
func parseEndpoint(s string) (*url.URL, bool, error) {
	raw := s
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, false, fmt.Errorf("invalid endpoint URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, false, fmt.Errorf("endpoint %q: want http(s)://host[:port][/path]", s)
	}
	switch p := strings.TrimSuffix(u.Path, "/"); p {
	case "", "/v2":
		u.Path = ""
		return u, false, nil
	default:
		u.Path = p
		return u, true, nil
	}
}

// endpoint makes one Endpoint: its TLS client and credentials come from
// `configs` under the endpoint's host (the registry's own name too for the
// registry itself, so configs."docker.io" applies to registry-1.docker.io),
// then `configs."*"`.
func (c *Client) endpoint(registry string, u *url.URL, override, mirror bool) (Endpoint, error) {
	keys := []string{u.Host}
	if !mirror {
		keys = []string{registry, u.Host}
	}
	keys = append(keys, config.Wildcard)
	var tlsCfg *config.TLSConfig
	var authCfg *config.AuthConfig
	if c.reg != nil {
		for _, k := range keys {
			if cfg, ok := c.reg.Configs[k]; ok && tlsCfg == nil && cfg.TLS != nil {
				tlsCfg = cfg.TLS
			}
			if cfg, ok := c.reg.Configs[k]; ok && authCfg == nil && cfg.Auth != nil {
				authCfg = cfg.Auth
			}
		}
	}
	scheme := u.Scheme
	client, fallback, err := c.client(u.Host, scheme, tlsCfg)
	if err != nil {
		return Endpoint{}, fmt.Errorf("upstream %s: endpoint %s: %w", registry, u.Redacted(), err)
	}
	if fallback {
		// containerd: TLS configured for an http host of ambiguous port
		// means try https first and fall back to http.
		scheme = "https"
	}
	apiPath := "/v2"
	shown := u.Scheme + "://" + u.Host
	if override {
		apiPath = u.Path
		shown += u.Path
	}
	user, secret, err := credentials(authCfg)
	if err != nil {
		return Endpoint{}, fmt.Errorf("upstream %s: configs %q auth: %w", registry, u.Host, err)
	}
	return Endpoint{
		URL:         shown,
		Mirror:      mirror,
		Credentials: user != "" || secret != "",
		auth:        authCfg,
		host: docker.RegistryHost{
			Client:       client,
			Host:         u.Host,
			Scheme:       scheme,
			Path:         apiPath,
			Capabilities: docker.HostCapabilityPull | docker.HostCapabilityResolve,
		},
	}, nil
}

type clientKey struct {
	host, scheme string
	tls          config.TLSConfig
	hasTLS       bool
}

// client returns the HTTP client of one host and TLS setting (or the one
// shared by hosts without TLS settings), made as containerd's hosts.toml
// handling makes it (DefaultHTTPTransport, CA
// files added to the system pool, client key pair, skip_verify). fallback
// reports that an http host got TLS settings: https is tried first.
func (c *Client) client(host, scheme string, t *config.TLSConfig) (*http.Client, bool, error) {
	var key clientKey // the shared client of hosts without TLS settings
	if t != nil {
		key = clientKey{host: host, scheme: scheme, tls: *t, hasTLS: true}
	}
	_, port, _ := net.SplitHostPort(host)
	fallback := key.hasTLS && scheme == "http" && port != "80"

	c.mu.Lock()
	defer c.mu.Unlock()
	if hc, ok := c.clients[key]; ok {
		return hc, fallback, nil
	}
	tlsConfig := &tls.Config{}
	if t != nil {
		if err := applyTLS(tlsConfig, t); err != nil {
			return nil, false, err
		}
	}
	tr := docker.DefaultHTTPTransport(tlsConfig)
	tr.DialContext = c.guard.dial
	var rt http.RoundTripper = tr
	if fallback {
		rt = docker.NewHTTPFallback(rt)
	}
	if c.opts.wrapTransport != nil {
		rt = c.opts.wrapTransport(rt)
	}
	hc := &http.Client{Transport: rt}
	c.clients[key] = hc
	return hc, fallback, nil
}

func applyTLS(cfg *tls.Config, t *config.TLSConfig) error {
	cfg.InsecureSkipVerify = t.InsecureSkipVerify
	if t.CAFile != "" {
		pool, err := x509.SystemCertPool()
		if err != nil {
			return fmt.Errorf("system cert pool: %w", err)
		}
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca_file %s: no PEM certificate", t.CAFile)
		}
		cfg.RootCAs = pool
	}
	if t.CertFile != "" {
		keyFile := t.KeyFile
		if keyFile == "" {
			keyFile = t.CertFile // containerd: the key may sit in the cert file
		}
		pair, err := tls.LoadX509KeyPair(t.CertFile, keyFile)
		if err != nil {
			return fmt.Errorf("cert_file/key_file: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return nil
}

// credentials turns a registries.yaml auth into what containerd's
// authorizer wants, with the CRI plugin's rules (ParseAuth): username and
// password; else an identity token as the secret with no user (OAuth
// refresh token); else `auth`, base64 of user:password; else anonymous.
func credentials(a *config.AuthConfig) (user, secret string, err error) {
	switch {
	case a == nil:
		return "", "", nil
	case a.Username != "":
		return a.Username, a.Password, nil
	case a.IdentityToken != "":
		return "", a.IdentityToken, nil
	case a.Auth != "":
		dec, err := base64.StdEncoding.DecodeString(a.Auth)
		if err != nil {
			return "", "", fmt.Errorf("auth is not base64: %w", err)
		}
		u, p, ok := strings.Cut(string(dec), ":")
		if !ok {
			return "", "", fmt.Errorf("auth is not base64 of user:password")
		}
		return u, strings.Trim(p, "\x00"), nil
	}
	return "", "", nil
}
