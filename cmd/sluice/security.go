package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"

	"github.com/libp2p/go-libp2p/core/pnet"
)

// loadPSK reads --psk-file: 32 bytes raw, 64 hex characters, or libp2p's
// /key/swarm/psk/1.0.0/ format. Anything shorter is refused.
func loadPSK(path string) (pnet.PSK, error) {
	if path == "" {
		return nil, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--psk-file: %w", err)
	}
	if bytes.HasPrefix(b, []byte("/key/swarm/psk/1.0.0/")) {
		psk, err := pnet.DecodeV1PSK(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("--psk-file %s: %w", path, err)
		}
		return psk, nil
	}
	if t := bytes.TrimSpace(b); len(t) == 64 {
		if k, err := hex.DecodeString(string(t)); err == nil {
			return pnet.PSK(k), nil
		}
	}
	if len(b) == 32 {
		return pnet.PSK(b), nil
	}
	return nil, fmt.Errorf("--psk-file %s: want a 32-byte key (32 raw bytes or 64 hex characters), got %d bytes", path, len(bytes.TrimSpace(b)))
}

// loadTLS builds the registry server's TLS config (client certificates
// required when --client-ca is set) and the mirror's client config (this
// node's certificate, servers verified against --peer-ca).
func loadTLS(cfg *runConfig) (server, client *tls.Config, err error) {
	if cfg.TLSCert == "" && cfg.TLSKey == "" {
		if cfg.ClientCA != "" {
			return nil, nil, errors.New("--client-ca needs --tls-cert and --tls-key")
		}
		if cfg.PeerCA == "" {
			return nil, nil, nil
		}
	}
	var certs []tls.Certificate
	if cfg.TLSCert != "" || cfg.TLSKey != "" {
		cert, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, nil, fmt.Errorf("--tls-cert/--tls-key: %w", err)
		}
		certs = []tls.Certificate{cert}
		server = &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
	}
	if cfg.ClientCA != "" {
		pool, err := loadPool(cfg.ClientCA)
		if err != nil {
			return nil, nil, fmt.Errorf("--client-ca: %w", err)
		}
		server.ClientCAs = pool
		server.ClientAuth = tls.RequireAndVerifyClientCert
	}
	client = &tls.Config{Certificates: certs, MinVersion: tls.VersionTLS12}
	peerCA := cfg.PeerCA
	if peerCA == "" {
		// Peers present certificates of the cluster CA; without an
		// explicit --peer-ca trust the CA that signs client certificates,
		// never the system roots.
		peerCA = cfg.ClientCA
	}
	if peerCA != "" {
		pool, err := loadPool(peerCA)
		if err != nil {
			return nil, nil, fmt.Errorf("--peer-ca: %w", err)
		}
		client.RootCAs = pool
	}
	return server, client, nil
}

func loadPool(path string) (*x509.CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}
