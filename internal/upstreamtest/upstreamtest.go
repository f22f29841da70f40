// Package upstreamtest runs a real upstream registry for tests: the CNCF
// distribution registry (github.com/distribution/distribution/v3) in
// process on 127.0.0.1, with filesystem storage in a test directory,
// optionally TLS (a certificate from internal/certs) and Basic (htpasswd)
// or Bearer token auth (a token server in the same process issuing JWTs the
// registry trusts). A counting reverse proxy stands in front: clients talk
// to it, and it counts requests and response bytes per path and kind
// (manifest, blob, token). Push uploads an internal/testimage image with
// plain distribution API calls straight to the registry, uncounted.
package upstreamtest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"golang.org/x/crypto/bcrypt"

	// The registry finds its auth and storage backends by name.
	_ "github.com/distribution/distribution/v3/registry/auth/htpasswd"
	_ "github.com/distribution/distribution/v3/registry/auth/token"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
	_ "github.com/distribution/distribution/v3/registry/storage/driver/inmemory"
)

// Auth is how the registry authenticates clients.
type Auth int

// Auth modes.
const (
	AuthNone  Auth = iota
	AuthBasic      // htpasswd: a Basic challenge
	AuthToken      // a Bearer challenge naming the in-process token server
)

// Options configure a Registry. The zero value is an anonymous plain-http
// registry.
type Options struct {
	Auth Auth
	// Username and Password are the one account (Basic and token auth).
	Username, Password string
	// IdentityToken is accepted by the token server as an OAuth refresh
	// token (registries.yaml identity_token).
	IdentityToken string
	// AnonymousPull lets the token server grant pull to anyone.
	AnonymousPull bool
	// TLSCert makes the front serve https with this certificate.
	TLSCert *tls.Certificate
	// ClientCAs, with TLSCert, requires client certificates signed by them.
	ClientCAs *x509.CertPool
	// Prefix serves the API under Prefix + "/v2/" instead of "/v2/", e.g.
	// "/mirror" (an endpoint URL with an explicit path).
	Prefix string
	// InMemory keeps content in memory instead of a test directory.
	InMemory bool
}

// Registry is a running test registry.
type Registry struct {
	// URL is the front (counting proxy): scheme://127.0.0.1:port.
	URL string
	// Host is host:port of URL.
	Host string
	// Counter counts what the front answered.
	Counter *Counter

	opts    Options
	backend *httptest.Server
	front   *httptest.Server
	app     *handlers.App
	tokens  *tokenServer
	cancel  context.CancelFunc
	down    atomic.Bool
	status  atomic.Int32
}

// Start runs a registry until the test ends.
func Start(t testing.TB, o Options) *Registry {
	t.Helper()
	r, err := start(t.TempDir(), o)
	if err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

func start(dir string, o Options) (*Registry, error) {
	if o.Auth != AuthNone && o.Username == "" && o.IdentityToken == "" {
		return nil, fmt.Errorf("auth needs a Username or an IdentityToken")
	}
	prefix := strings.TrimSuffix(o.Prefix, "/")
	if prefix != "" && !strings.HasPrefix(prefix, "/") {
		return nil, fmt.Errorf("prefix %q must start with /", o.Prefix)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if o.TLSCert != nil {
		scheme = "https"
	}
	r := &Registry{URL: scheme + "://" + ln.Addr().String(), Host: ln.Addr().String(), Counter: &Counter{}, opts: o}

	cfg := &configuration.Configuration{}
	cfg.HTTP.Secret = "upstreamtest"
	cfg.HTTP.RelativeURLs = true
	if prefix != "" {
		cfg.HTTP.Prefix = prefix + "/"
	}
	cfg.Storage = configuration.Storage{
		"delete":      configuration.Parameters{"enabled": true},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	if o.InMemory {
		cfg.Storage["inmemory"] = configuration.Parameters{}
	} else {
		cfg.Storage["filesystem"] = configuration.Parameters{"rootdirectory": filepath.Join(dir, "storage")}
	}
	switch o.Auth {
	case AuthBasic:
		hash, err := bcrypt.GenerateFromPassword([]byte(o.Password), bcrypt.MinCost)
		if err != nil {
			ln.Close()
			return nil, err
		}
		p := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(p, []byte(o.Username+":"+string(hash)+"\n"), 0o600); err != nil {
			ln.Close()
			return nil, err
		}
		cfg.Auth = configuration.Auth{"htpasswd": {"realm": "upstreamtest", "path": p}}
	case AuthToken:
		r.tokens, err = newTokenServer(dir, r.URL+tokenPath, o)
		if err != nil {
			ln.Close()
			return nil, err
		}
		cfg.Auth = configuration.Auth{"token": r.tokens.authParams()}
	}
	ctx, cancel := context.WithCancel(context.Background())
	app, err := newApp(ctx, cfg)
	if err != nil {
		cancel()
		ln.Close()
		return nil, err
	}
	r.app = app
	r.cancel = cancel
	r.backend = httptest.NewServer(app)

	backendURL, _ := url.Parse(r.backend.URL)
	proxy := httputil.NewSingleHostReverseProxy(backendURL)
	proxy.FlushInterval = -1
	mux := http.NewServeMux()
	if r.tokens != nil {
		mux.Handle(tokenPath, r.tokens)
	}
	mux.Handle("/", proxy)
	front := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if r.down.Load() {
			// Hang up without an answer: a registry that is down.
			if hj, ok := w.(http.Hijacker); ok {
				if c, _, err := hj.Hijack(); err == nil {
					c.Close()
					return
				}
			}
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		if code := int(r.status.Load()); code != 0 {
			http.Error(w, http.StatusText(code), code)
			return
		}
		mux.ServeHTTP(w, req)
	})
	r.front = &httptest.Server{Listener: ln, Config: &http.Server{Handler: r.Counter.Wrap(front)}}
	if o.TLSCert != nil {
		r.front.TLS = &tls.Config{Certificates: []tls.Certificate{*o.TLSCert}}
		if o.ClientCAs != nil {
			r.front.TLS.ClientCAs = o.ClientCAs
			r.front.TLS.ClientAuth = tls.RequireAndVerifyClientCert
		}
		r.front.StartTLS()
	} else {
		r.front.Start()
	}
	return r, nil
}

// newApp builds the distribution app, which panics on a bad configuration.
func newApp(ctx context.Context, cfg *configuration.Configuration) (app *handlers.App, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("distribution registry: %v", p)
		}
	}()
	return handlers.NewApp(ctx, cfg), nil
}

// SetDown makes the front hang up on every request (true) or answer again
// (false): an upstream that is down.
func (r *Registry) SetDown(down bool) { r.down.Store(down) }

// SetStatus makes the front answer every request with an empty response
// of this status (e.g. 503); 0 restores normal answers.
func (r *Registry) SetStatus(code int) { r.status.Store(int32(code)) }

// Close stops the registry.
func (r *Registry) Close() {
	r.front.Close()
	r.backend.Close()
	_ = r.app.Shutdown()
	r.cancel()
}

// ClosedURL returns an http URL on 127.0.0.1 where nothing listens: an
// endpoint that refuses connections.
func ClosedURL(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("upstreamtest: %v", err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "http://" + addr
}
