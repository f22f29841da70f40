package upstream_test

import (
	"bytes"
	"encoding/base64"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluice-oci/sluice/core/upstream"
	"github.com/sluice-oci/sluice/internal/certs"
	"github.com/sluice-oci/sluice/internal/upstreamtest"
)

// TestClient_TLS reaches https registries with the CA and client
// certificate files of registries.yaml configs.<host>.tls.
func TestClient_TLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := certs.NewCA("upstream-test-ca")
	if err != nil {
		t.Fatal(err)
	}
	other, err := certs.NewCA("some-other-ca")
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile, otherFile := write("ca.crt", ca.CertPEM()), write("other.crt", other.CertPEM())
	server, err := ca.Issue("registry", []net.IP{net.IPv4(127, 0, 0, 1)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := server.TLSCertificate()
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Issue("node-1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := write("node.crt", client.CertPEM), write("node.key", client.KeyPEM)
	both := write("node.pem", append(append([]byte{}, client.CertPEM...), client.KeyPEM...))

	img := image(t, 7, 4096)
	tlsOnly := upstreamtest.Start(t, upstreamtest.Options{TLSCert: &serverCert, InMemory: true})
	push(t, tlsOnly, "1", img)
	mtls := upstreamtest.Start(t, upstreamtest.Options{TLSCert: &serverCert, ClientCAs: ca.Pool(), InMemory: true})
	push(t, mtls, "1", img)

	tests := []struct {
		name string
		reg  *upstreamtest.Registry
		tls  string // configs.<host>.tls body
		// asMirror lists the registry as an https endpoint of another
		// registry instead of asking it by its own (loopback, http) name.
		asMirror bool
		ok       bool
	}{
		{name: "ca_file", reg: tlsOnly, tls: "{ca_file: " + caFile + "}", ok: true},
		{name: "ca_file, https mirror endpoint", reg: tlsOnly, tls: "{ca_file: " + caFile + "}", asMirror: true, ok: true},
		{name: "wrong CA", reg: tlsOnly, tls: "{ca_file: " + otherFile + "}"},
		{name: "wrong CA, https mirror endpoint", reg: tlsOnly, tls: "{ca_file: " + otherFile + "}", asMirror: true},
		{name: "no TLS settings: plain http to an https server", reg: tlsOnly},
		{name: "insecure_skip_verify", reg: tlsOnly, tls: "{insecure_skip_verify: true}", ok: true},
		{name: "client certificate", reg: mtls, tls: "{ca_file: " + caFile + ", cert_file: " + certFile + ", key_file: " + keyFile + "}", ok: true},
		{name: "client certificate and key in one file", reg: mtls, tls: "{ca_file: " + caFile + ", cert_file: " + both + "}", ok: true},
		{name: "no client certificate", reg: mtls, tls: "{ca_file: " + caFile + "}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			registry, yaml := tt.reg.Host, ""
			if tt.asMirror {
				// A registry that refuses connections, mirrored by tt.reg.
				registry = strings.TrimPrefix(upstreamtest.ClosedURL(t), "http://")
				yaml = yamlf("mirrors:\n  %s:\n    endpoint: [%q]\n", registry, "https://"+tt.reg.Host)
			}
			if tt.tls != "" {
				yaml += yamlf("configs:\n  %q:\n    tls: %s\n", tt.reg.Host, tt.tls)
			}
			c := upstream.New(parse(t, yaml))
			b, desc, err := c.FetchManifest(t.Context(), ref(registry, "1", ""))
			if !tt.ok {
				if err == nil {
					t.Fatal("fetched without the right TLS settings")
				}
				t.Logf("refused as it should be: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != img.Target.Digest || !bytes.Equal(b, img.Blobs[img.Target.Digest]) {
				t.Fatalf("manifest %s, want %s", desc.Digest, img.Target.Digest)
			}
		})
	}
}

// TestClient_Auth pulls from registries that want Basic or Bearer token
// auth, with credentials from registries.yaml configs.<host>.auth.
func TestClient_Auth(t *testing.T) {
	t.Parallel()
	img := image(t, 8, 128<<10)
	basic := upstreamtest.Start(t, upstreamtest.Options{Auth: upstreamtest.AuthBasic, Username: "alice", Password: "s3cret", InMemory: true})
	push(t, basic, "1", img)
	token := upstreamtest.Start(t, upstreamtest.Options{Auth: upstreamtest.AuthToken, Username: "alice", Password: "s3cret",
		IdentityToken: "refresh-me", InMemory: true})
	push(t, token, "1", img)
	public := upstreamtest.Start(t, upstreamtest.Options{Auth: upstreamtest.AuthToken, Username: "alice", Password: "s3cret",
		AnonymousPull: true, InMemory: true})
	push(t, public, "1", img)
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

	tests := []struct {
		name string
		reg  *upstreamtest.Registry
		// key is the configs key; "" means the registry's host.
		key, auth string
		ok        bool
		// scheme is the Authorization scheme the blob GET must carry.
		scheme string
	}{
		{name: "basic, username and password", reg: basic, auth: "{username: alice, password: s3cret}", ok: true, scheme: "Basic"},
		{name: "basic, auth field", reg: basic, auth: "{auth: " + b64("alice:s3cret") + "}", ok: true, scheme: "Basic"},
		{name: "basic, wildcard config", reg: basic, key: "*", auth: "{username: alice, password: s3cret}", ok: true, scheme: "Basic"},
		{name: "basic, wrong password", reg: basic, auth: "{username: alice, password: nope}"},
		{name: "basic, no credentials", reg: basic},
		{name: "token, username and password", reg: token, auth: "{username: alice, password: s3cret}", ok: true, scheme: "Bearer"},
		{name: "token, auth field", reg: token, auth: "{auth: " + b64("alice:s3cret") + "}", ok: true, scheme: "Bearer"},
		{name: "token, identity token", reg: token, auth: "{identity_token: refresh-me}", ok: true, scheme: "Bearer"},
		{name: "token, wrong password", reg: token, auth: "{username: alice, password: nope}"},
		{name: "token, wrong identity token", reg: token, auth: "{identity_token: stale}"},
		{name: "token, anonymous on a private repository", reg: token},
		{name: "token, anonymous on a public repository", reg: public, ok: true, scheme: "Bearer"},
		{name: "token, credentials for another host", reg: token, key: "elsewhere.example.com", auth: "{username: alice, password: s3cret}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			yaml := yamlf("mirrors:\n  %q:\n", tt.reg.Host)
			if tt.auth != "" {
				key := tt.key
				if key == "" {
					key = tt.reg.Host
				}
				yaml += yamlf("configs:\n  %q:\n    auth: %s\n", key, tt.auth)
			}
			c := upstream.New(parse(t, yaml))
			u, err := c.Upstream(tt.reg.Host)
			if err != nil {
				t.Fatal(err)
			}
			wantCreds := tt.auth != "" && tt.key != "elsewhere.example.com"
			if u.Credentials != wantCreds || u.Endpoint != "http://"+tt.reg.Host {
				t.Fatalf("Upstream = %+v, want credentials %v", u, wantCreds)
			}
			r := ref(tt.reg.Host, "1", "")
			_, desc, err := c.FetchManifest(t.Context(), r)
			if !tt.ok {
				checkErr(t, err, upstream.ErrUnauthorized)
				t.Logf("refused as it should be: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if desc.Digest != img.Target.Digest {
				t.Fatalf("resolved %s, want %s", desc.Digest, img.Target.Digest)
			}
			layer := img.Layers[0]
			got, err := readBlob(t, c, r, layer.Digest, -1)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, img.Blobs[layer.Digest]) {
				t.Fatal("layer bytes differ")
			}
			p := "/v2/" + repo + "/blobs/" + layer.Digest.String()
			var seen bool
			for _, q := range tt.reg.Counter.Requests() {
				if q.Path == p && q.Method == "GET" && q.Status == 200 {
					seen = true
					if q.Authorization != tt.scheme {
						t.Fatalf("blob GET carried %q auth, want %q", q.Authorization, tt.scheme)
					}
				}
			}
			if !seen {
				t.Fatal("no successful blob GET counted")
			}
		})
	}
}

// TestClient_TokenPerCall checks that the requests of one call (a HEAD and
// its GET) share one token, and that a call does not reuse the last one's.
func TestClient_TokenPerCall(t *testing.T) {
	t.Parallel()
	img := image(t, 9, 1024)
	up := upstreamtest.Start(t, upstreamtest.Options{Auth: upstreamtest.AuthToken, Username: "bob", Password: "pw", InMemory: true})
	push(t, up, "1", img)
	c := upstream.New(parse(t, yamlf("configs:\n  %q:\n    auth: {username: bob, password: pw}\n", up.Host)))
	r := ref(up.Host, "1", "")
	calls := []struct {
		name string
		call func() error
	}{
		{name: "FetchManifest (HEAD tag, GET digest)", call: func() error {
			_, _, err := c.FetchManifest(t.Context(), r)
			return err
		}},
		{name: "Blob of unknown size (HEADs, GET)", call: func() error {
			_, err := readBlob(t, c, r, img.Layers[0].Digest, -1)
			return err
		}},
		{name: "Resolve (HEAD)", call: func() error {
			_, err := c.Resolve(t.Context(), r)
			return err
		}},
	}
	for _, tt := range calls {
		before := up.Counter.Kind(upstreamtest.KindToken).Requests
		if err := tt.call(); err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if n := up.Counter.Kind(upstreamtest.KindToken).Requests - before; n != 1 {
			t.Fatalf("%s: %d token requests, want 1", tt.name, n)
		}
	}
}
