package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

func TestIssueFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ca, err := Init(dir, "sluice test CA", false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, "again", false); !errors.Is(err, ErrExists) {
		t.Fatalf("second Init: %v, want ErrExists", err)
	}
	n, err := IssueFiles(dir, "node-1", []net.IP{net.ParseIP("127.0.0.2")}, []string{"node-1.local"})
	if err != nil {
		t.Fatal(err)
	}
	for f, want := range map[string]os.FileMode{CAKeyFile: 0o600, CAFile: 0o644, "node-1.key": 0o600, "node-1.crt": 0o644} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", f, fi.Mode().Perm(), want)
		}
	}
	c := n.Cert
	if c.Subject.CommonName != "node-1" {
		t.Errorf("CN %q", c.Subject.CommonName)
	}
	if pk, ok := c.PublicKey.(*ecdsa.PublicKey); !ok || pk.Curve != elliptic.P256() {
		t.Errorf("key %T, want ECDSA P-256", c.PublicKey)
	}
	if c.NotAfter.Sub(c.NotBefore) > NodeValidity+backdate+1e9 {
		t.Errorf("validity %v too long", c.NotAfter.Sub(c.NotBefore))
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Errorf("verify for usage %v: %v", u, err)
		}
	}
	if err := c.VerifyHostname("127.0.0.2"); err != nil {
		t.Error(err)
	}
	if err := c.VerifyHostname("node-1.local"); err != nil {
		t.Error(err)
	}
	if _, err := tls.LoadX509KeyPair(Paths(dir, "node-1")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
}

func TestIssue_badName(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"", "../x", "a/b", "-x", string(make([]byte, 70))} {
		if _, err := ca.Issue(name, nil, nil); err == nil {
			t.Errorf("Issue(%q) accepted", name)
		}
	}
}

// TestMutualTLS checks that two issued certificates complete a mutual TLS
// handshake and that a certificate of another CA is refused.
func TestMutualTLS(t *testing.T) {
	t.Parallel()
	ca, _ := NewCA("ca")
	other, _ := NewCA("other")
	ip := []net.IP{net.ParseIP("127.0.0.1")}
	srvNode, _ := ca.Issue("node-1", ip, nil)
	cliNode, _ := ca.Issue("node-2", nil, nil)
	evilNode, _ := other.Issue("node-3", nil, nil)
	srvCert, _ := srvNode.TLSCertificate()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	srv.StartTLS()
	defer srv.Close()
	get := func(n *Node) (string, error) {
		cert, _ := n.TLSCertificate()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), Certificates: []tls.Certificate{cert}}}}
		resp, err := c.Get(srv.URL)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	if cn, err := get(cliNode); err != nil || cn != "node-2" {
		t.Fatalf("good client: %q, %v", cn, err)
	}
	if _, err := get(evilNode); err == nil {
		t.Fatal("client of another CA accepted")
	}
}
