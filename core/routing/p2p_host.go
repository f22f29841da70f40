package routing

import (
	"fmt"
	"slices"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	ma "github.com/multiformats/go-multiaddr"
)

// newHost starts the node's libp2p host, or takes cfg.Host when one was
// given. It returns the host, its private key and the address it listens
// on (whose IP tells whether the node runs on loopback).
func (cfg P2PConfig) newHost() (host.Host, crypto.PrivKey, ma.Multiaddr, error) {
	if cfg.Host != nil {
		key := cfg.Host.Peerstore().PrivKey(cfg.Host.ID())
		if key == nil {
			return nil, nil, nil, fmt.Errorf("p2p config: the given host has no private key in its peerstore")
		}
		addrs := cfg.Host.Addrs()
		if len(addrs) == 0 {
			return nil, nil, nil, fmt.Errorf("p2p config: the given host listens on no address")
		}
		return cfg.Host, key, addrs[0], nil
	}
	listen, err := ParseListenAddr(cfg.ListenAddr)
	if err != nil {
		return nil, nil, nil, err
	}
	var announce []ma.Multiaddr
	for _, a := range cfg.AnnounceAddrs {
		m, err := ParseListenAddr(a)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("announce address: %w", err)
		}
		announce = append(announce, m)
	}
	key, err := LoadOrCreateKey(cfg.DataDir)
	if err != nil {
		return nil, nil, nil, err
	}
	opts := []libp2p.Option{
		libp2p.Identity(key),
		libp2p.ListenAddrs(listen),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Security(noise.ID, noise.New),
		libp2p.DisableRelay(),
		libp2p.DisableMetrics(),
		libp2p.UserAgent("sluice"),
	}
	if len(cfg.PSK) > 0 {
		opts = append(opts, libp2p.PrivateNetwork(cfg.PSK))
	}
	if len(announce) > 0 {
		opts = append(opts, libp2p.AddrsFactory(func(addrs []ma.Multiaddr) []ma.Multiaddr {
			return append(slices.Clone(addrs), announce...)
		}))
	}
	h, err := libp2p.New(opts...)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("start libp2p host: %w", err)
	}
	return h, key, listen, nil
}
