package routing

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/libp2p/go-libp2p/core/crypto"
	ma "github.com/multiformats/go-multiaddr"
)

// KeyFile is the name of the node key in the data directory.
const KeyFile = "p2p.key"

// LoadOrCreateKey reads the node's Ed25519 key from dir/p2p.key, creating
// it (mode 0600, dir 0700) when missing, so a node keeps its peer ID across
// restarts. An empty dir gives an ephemeral key.
func LoadOrCreateKey(dir string) (crypto.PrivKey, error) {
	if dir == "" {
		k, _, err := crypto.GenerateEd25519Key(rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("generate node key: %w", err)
		}
		return k, nil
	}
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		k, err := crypto.UnmarshalPrivateKey(b)
		if err != nil {
			return nil, fmt.Errorf("read node key %s: %w", path, err)
		}
		return k, nil
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("read node key: %w", err)
	}
	k, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate node key: %w", err)
	}
	b, err = crypto.MarshalPrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal node key: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	// Write to a temporary file and rename, so a crash never leaves a
	// truncated key behind.
	tmp, err := os.CreateTemp(dir, KeyFile+".*")
	if err != nil {
		return nil, fmt.Errorf("write node key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write node key: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return nil, fmt.Errorf("write node key: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("write node key: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return nil, fmt.Errorf("write node key: %w", err)
	}
	return k, nil
}

// ParseListenAddr turns a --p2p-addr value into a TCP multiaddr: ":5001"
// (every IPv4 interface), "127.0.0.2:5001", "[::1]:5001", or a multiaddr
// ("/ip4/127.0.0.2/tcp/5001") as is. Port 0 picks a free port.
func ParseListenAddr(s string) (ma.Multiaddr, error) {
	if strings.HasPrefix(s, "/") {
		m, err := ma.NewMultiaddr(s)
		if err != nil {
			return nil, fmt.Errorf("p2p listen address %q: %w", s, err)
		}
		return m, nil
	}
	host, port, ok := strings.Cut(s, ":")
	if strings.HasPrefix(s, "[") {
		i := strings.Index(s, "]:")
		if i < 0 {
			return nil, fmt.Errorf("p2p listen address %q: want [ip6]:port", s)
		}
		host, port, ok = s[1:i], s[i+2:], true
	} else if strings.Count(s, ":") > 1 {
		ok = false
	}
	if !ok {
		return nil, fmt.Errorf("p2p listen address %q: want host:port", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return nil, fmt.Errorf("p2p listen address %q: bad port: %w", s, err)
	}
	ip := netip.IPv4Unspecified()
	if host != "" {
		var err error
		if ip, err = netip.ParseAddr(host); err != nil {
			return nil, fmt.Errorf("p2p listen address %q: %w", s, err)
		}
	}
	proto := "ip4"
	if ip.Is6() && !ip.Is4In6() {
		proto = "ip6"
	}
	m, err := ma.NewMultiaddr("/" + proto + "/" + ip.Unmap().String() + "/tcp/" + port)
	if err != nil {
		return nil, fmt.Errorf("p2p listen address %q: %w", s, err)
	}
	return m, nil
}
