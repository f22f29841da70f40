// Package certs makes a development certificate authority and node
// certificates for sluice's mTLS between nodes: ECDSA P-256 keys, a CA
// valid for ten years, node certificates valid for one year that serve as
// both TLS server and client (the registry listener and the mirror's
// client). It is for tests, the demo and small clusters; production
// clusters should issue from their own PKI (cert-manager, the k3s CA).
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// File names inside a certificate directory.
const (
	CAFile    = "ca.crt"
	CAKeyFile = "ca.key"
)

// Validity periods.
const (
	CAValidity   = 10 * 365 * 24 * time.Hour
	NodeValidity = 365 * 24 * time.Hour
	// backdate tolerates clock skew between nodes.
	backdate = 5 * time.Minute
)

// ErrExists is returned by Init when the directory already holds a CA.
var ErrExists = errors.New("certificate authority already exists")

// CA is a certificate authority able to sign node certificates.
type CA struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// Node is an issued node certificate.
type Node struct {
	CertPEM, KeyPEM []byte
	Cert            *x509.Certificate
}

// nameRe bounds node names to what is safe as a file name and a CN.
var nameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)

// NewCA makes a CA named cn.
func NewCA(cn string) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"sluice"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Issue signs a certificate for a node: CN=name, SANs from ips and dns
// (name itself is always a DNS SAN), usable as TLS server and client.
func (ca *CA) Issue(name string, ips []net.IP, dns []string) (*Node, error) {
	if !nameRe.MatchString(name) {
		return nil, fmt.Errorf("certs: node name %q: want letters, digits, '.', '_' or '-', at most 63", name)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	now := time.Now()
	notAfter := now.Add(NodeValidity)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name, Organization: []string{"sluice"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:     append([]string{name}, dns...),
		IPAddresses:  ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Node{CertPEM: pemBlock("CERTIFICATE", der), KeyPEM: keyPEM, Cert: cert}, nil
}

// CertPEM returns the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return pemBlock("CERTIFICATE", ca.Cert.Raw) }

// Pool returns a pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// TLSCertificate returns the node's certificate and key for crypto/tls.
func (n *Node) TLSCertificate() (tls.Certificate, error) {
	return tls.X509KeyPair(n.CertPEM, n.KeyPEM)
}

// Init makes a CA in dir (ca.crt 0644, ca.key 0600). It refuses to
// overwrite an existing CA unless force is set.
func Init(dir, cn string, force bool) (*CA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CAKeyFile)); err == nil && !force {
		return nil, fmt.Errorf("certs: %s: %w (use --force to replace it)", dir, ErrExists)
	}
	ca, err := NewCA(cn)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(ca.Key)
	if err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CAKeyFile), keyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(filepath.Join(dir, CAFile), ca.CertPEM(), 0o644); err != nil {
		return nil, err
	}
	return ca, nil
}

// Load reads the CA from dir.
func Load(dir string) (*CA, error) {
	cb, err := os.ReadFile(filepath.Join(dir, CAFile))
	if err != nil {
		return nil, fmt.Errorf("certs: %w (run `sluice certs init --dir %s` first)", err, dir)
	}
	kb, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	cblk, _ := pem.Decode(cb)
	kblk, _ := pem.Decode(kb)
	if cblk == nil || kblk == nil {
		return nil, fmt.Errorf("certs: %s: no PEM block in %s or %s", dir, CAFile, CAKeyFile)
	}
	cert, err := x509.ParseCertificate(cblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", CAFile, err)
	}
	key, err := x509.ParseECPrivateKey(kblk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: %s: %w", CAKeyFile, err)
	}
	if !cert.IsCA || !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certs: %s: %s is not a CA or does not match %s", dir, CAFile, CAKeyFile)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// Paths returns the certificate and key file names of a node in dir.
func Paths(dir, name string) (cert, key string) {
	return filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
}

// IssueFiles issues a node certificate with the CA in dir and writes
// <name>.crt (0644) and <name>.key (0600) there.
func IssueFiles(dir, name string, ips []net.IP, dns []string) (*Node, error) {
	ca, err := Load(dir)
	if err != nil {
		return nil, err
	}
	n, err := ca.Issue(name, ips, dns)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := Paths(dir, name)
	if err := writeFile(keyPath, n.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	if err := writeFile(certPath, n.CertPEM, 0o644); err != nil {
		return nil, err
	}
	return n, nil
}

func encodeKey(k *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("certs: %w", err)
	}
	return pemBlock("EC PRIVATE KEY", der), nil
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n.Add(n, big.NewInt(1))
}

// writeFile writes atomically with the given mode (a key never exists,
// even briefly, with looser permissions).
func writeFile(path string, b []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("certs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("certs: %w", err)
	}
	return nil
}
