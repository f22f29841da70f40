// Package routing finds which sluice nodes hold a piece of content and tells
// the others what this node holds. A Router answers Lookup with peers and
// announces keys with Advertise; the P2P backend does this on a libp2p
// Kademlia DHT (protocol prefix /sluice), the Memory backend in process for
// tests. The Advertiser keeps a node's announcements in step with its store.
//
// Keys are strings: a digest ("sha256:…") for every manifest, index, config
// and layer, and "registry/repository:tag" for every tagged image. On the DHT
// a key becomes a CID (v1, raw codec) over the sha256 multihash of
// "sluice/" + key, see KeyCID.
package routing

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/ipfs/go-cid"
	"github.com/multiformats/go-multihash"
	"github.com/opencontainers/go-digest"
)

// Router finds and announces content holders. Implementations are safe for
// concurrent use.
type Router interface {
	// Ready reports whether the router knows at least one other node (the
	// DHT routing table is not empty).
	Ready(ctx context.Context) (bool, error)
	// Lookup streams up to count peers that announced key (count <= 0: no
	// limit), never this node itself. The channel is closed when the search
	// ends, count peers were sent or ctx is done; a key nobody holds gives
	// an empty, closed channel no later than ctx's deadline. The caller must
	// drain the channel or cancel ctx.
	Lookup(ctx context.Context, key string, count int) (<-chan Peer, error)
	// Advertise announces that this node holds keys. Calling it again for
	// the same keys refreshes their records.
	Advertise(ctx context.Context, keys []string) error
	// Withdraw stops announcing keys. On the DHT, records already held by
	// other nodes are not revoked (Kademlia has no un-provide); they expire
	// after the record TTL, so a peer may still be offered for a withdrawn
	// key until then and must answer 404.
	Withdraw(ctx context.Context, keys []string) error
}

// PeerCounter is implemented by routers that can tell how many nodes they
// know (the routing table size); it feeds the sluice_peers gauge.
type PeerCounter interface {
	PeerCount() int
}

// Peer is a node that announced a key, and where to fetch it from.
type Peer struct {
	// ID is the node's libp2p peer ID ("12D3Koo…"), or the name given to a
	// Memory node.
	ID string
	// Addr is the node's registry: the IP the node is reached on, and the
	// registry port it announced.
	Addr netip.AddrPort
	// Scheme is "http" or "https", as the node announced.
	Scheme string
}

// URL returns the base URL of the peer's registry, e.g.
// "http://127.0.0.2:5000".
func (p Peer) URL() string {
	scheme := p.Scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + p.Addr.String()
}

// ErrInvalidKey is returned for a key that is neither a digest nor a
// registry/repository:tag.
var ErrInvalidKey = errors.New("invalid routing key")

// ErrNoPeers is returned by Advertise when the node knows no other node.
var ErrNoPeers = errors.New("no peers in the routing table")

// KeysError is returned by Advertise when only some keys failed: Keys are
// the keys that were not announced.
type KeysError struct {
	Keys []string
	Err  error
}

func (e *KeysError) Error() string {
	return fmt.Sprintf("%d keys not announced: %v", len(e.Keys), e.Err)
}

func (e *KeysError) Unwrap() error { return e.Err }

// keyNamespace prefixes every key before it is hashed, so sluice CIDs never
// collide with CIDs of the content itself.
const keyNamespace = "sluice/"

// DigestKey returns the routing key of content with digest d.
func DigestKey(d digest.Digest) string { return d.String() }

// TagKey returns the routing key of a tag, "registry/repository:tag".
func TagKey(registry, repository, tag string) string {
	return registry + "/" + repository + ":" + tag
}

// ValidateKey checks that key is a digest or a registry/repository:tag.
func ValidateKey(key string) error {
	if strings.Contains(key, ":") && !strings.Contains(key, "/") {
		if _, err := digest.Parse(key); err != nil {
			return fmt.Errorf("%w %q: %w", ErrInvalidKey, key, err)
		}
		return nil
	}
	slash := strings.Index(key, "/")
	colon := strings.LastIndex(key, ":")
	if slash <= 0 || colon < strings.LastIndex(key, "/") || colon == len(key)-1 ||
		strings.ContainsAny(key, " \t\n@") {
		return fmt.Errorf("%w %q: want a digest or registry/repository:tag", ErrInvalidKey, key)
	}
	return nil
}

// KeyCID returns the CID a key is announced under on the DHT: CIDv1, raw
// codec, sha256 multihash of "sluice/" + key.
func KeyCID(key string) (cid.Cid, error) {
	if err := ValidateKey(key); err != nil {
		return cid.Undef, err
	}
	mh, err := multihash.Sum([]byte(keyNamespace+key), multihash.SHA2_256, -1)
	if err != nil {
		return cid.Undef, fmt.Errorf("hash key %q: %w", key, err)
	}
	return cid.NewCidV1(cid.Raw, mh), nil
}
