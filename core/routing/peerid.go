package routing

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	ipnet "github.com/libp2p/go-libp2p/core/pnet"
	"github.com/libp2p/go-libp2p/p2p/net/pnet"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	mss "github.com/multiformats/go-multistream"
)

// discoverPeerID learns the peer ID of the sluice node listening on addr
// without knowing it beforehand, which go-libp2p's dialer requires. It
// does by hand the first steps of a libp2p TCP upgrade: the private-network
// layer when a PSK is set, multistream-select of /noise, and a Noise
// handshake as initiator with the peer ID check disabled. The handshake
// proves that the remote holds the private key of the ID it presents, so
// the ID is authentic (only its binding to the DNS name is taken on trust,
// as it would be for any address). The connection is then closed; the
// caller dials again through the host with the ID. With a PSK, only nodes
// holding it learn the ID.
func discoverPeerID(ctx context.Context, addr netip.AddrPort, psk ipnet.PSK, key crypto.PrivKey) (peer.ID, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return "", fmt.Errorf("discover peer ID at %s: %w", addr, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	if err := conn.SetDeadline(deadline); err != nil {
		return "", fmt.Errorf("discover peer ID at %s: %w", addr, err)
	}
	var c net.Conn = conn
	if len(psk) > 0 {
		if c, err = pnet.NewProtectedConn(psk, conn); err != nil {
			return "", fmt.Errorf("discover peer ID at %s: private network: %w", addr, err)
		}
	}
	if err := mss.SelectProtoOrFail(noise.ID, c); err != nil {
		return "", fmt.Errorf("discover peer ID at %s: negotiate %s: %w", addr, noise.ID, err)
	}
	tpt, err := noise.New(noise.ID, key, nil)
	if err != nil {
		return "", fmt.Errorf("discover peer ID: %w", err)
	}
	st, err := tpt.WithSessionOptions(noise.DisablePeerIDCheck())
	if err != nil {
		return "", fmt.Errorf("discover peer ID: %w", err)
	}
	sc, err := st.SecureOutbound(ctx, c, "")
	if err != nil {
		return "", fmt.Errorf("discover peer ID at %s: noise handshake: %w", addr, err)
	}
	defer sc.Close()
	id := sc.RemotePeer()
	if err := id.Validate(); err != nil {
		return "", fmt.Errorf("discover peer ID at %s: %w", addr, err)
	}
	return id, nil
}
