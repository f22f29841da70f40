// Package opatest serves OPA bundles and receives OPA decision logs on
// loopback, for tests of policy/opaplugins and of nodes started with
// --policy-config. Bundles are built and signed with OPA's own bundle
// packages.
package opatest

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"

	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/plugins/logs"
)

// Key is an ES256 key pair in PEM.
type Key struct{ Private, Public string }

// NewKey generates an ES256 key pair.
func NewKey(t testing.TB) Key {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.MarshalPKIXPublicKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return Key{
		Private: string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: priv})),
		Public:  string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pub})),
	}
}

// Bundle writes an OPA bundle (tar.gz) of modules (path → Rego) and data
// with the manifest revision, signed with key under keyID.
func Bundle(t testing.TB, revision string, modules map[string]string, data map[string]any, key Key, keyID string) []byte {
	t.Helper()
	b := bundle.Bundle{Manifest: bundle.Manifest{Revision: revision}, Data: data}
	if b.Data == nil {
		b.Data = map[string]any{}
	}
	for p, src := range modules {
		b.Modules = append(b.Modules, bundle.ModuleFile{URL: p, Path: p, Raw: []byte(src)})
	}
	if err := b.GenerateSignature(bundle.NewSigningConfig(key.Private, "ES256", ""), keyID, false); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := bundle.NewWriter(&buf).DisableFormat(true).Write(b); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Server serves one bundle at any path under /bundles/ with an ETag
// (If-None-Match → 304), and takes decision logs at POST /logs (a gzip
// JSON array of events, OPA's upload format).
type Server struct {
	mu       sync.Mutex
	bundle   []byte
	etag     string
	gets     int
	events   []logs.EventV1
	logPosts int
	logErrs  []error
}

// SetBundle replaces the bundle served.
func (s *Server) SetBundle(b []byte) {
	sum := sha256.Sum256(b)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.bundle, s.etag = b, `"`+hex.EncodeToString(sum[:8])+`"`
}

// Gets counts the bundle requests answered (200 or 304).
func (s *Server) Gets() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.gets
}

// Events returns the decision-log events received so far, and the
// errors of posts that did not parse as OPA events.
func (s *Server) Events() ([]logs.EventV1, []error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]logs.EventV1(nil), s.events...), append([]error(nil), s.logErrs...)
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && len(r.URL.Path) > len("/bundles/") && r.URL.Path[:len("/bundles/")] == "/bundles/":
		s.mu.Lock()
		b, etag := s.bundle, s.etag
		s.gets++
		s.mu.Unlock()
		if b == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "application/gzip")
		_, _ = w.Write(b)
	case r.Method == http.MethodPost && r.URL.Path == "/logs":
		evs, err := decodeEvents(r)
		s.mu.Lock()
		s.logPosts++
		if err != nil {
			s.logErrs = append(s.logErrs, err)
		}
		s.events = append(s.events, evs...)
		s.mu.Unlock()
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
		}
	default:
		http.NotFound(w, r)
	}
}

func decodeEvents(r *http.Request) ([]logs.EventV1, error) {
	if r.Header.Get("Content-Encoding") != "gzip" {
		return nil, fmt.Errorf("decision log post: Content-Encoding %q, want gzip", r.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(r.Body)
	if err != nil {
		return nil, fmt.Errorf("decision log post: %w", err)
	}
	body, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decision log post: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	var evs []logs.EventV1
	if err := dec.Decode(&evs); err != nil {
		return nil, fmt.Errorf("decision log post is not a JSON array of OPA events: %w", err)
	}
	return evs, nil
}
