package routing

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/ipfs/go-cid"
	ma "github.com/multiformats/go-multiaddr"
)

func TestKeyCID(t *testing.T) {
	t.Parallel()
	const dgst = "sha256:6c3c624b58dbbcd3c0dd82b4c53f04194d1247c6eebdaab7c610cf7d66709b3b"
	tests := []struct {
		key     string
		wantErr bool
	}{
		{key: dgst},
		{key: "docker.io/library/nginx:1.27"},
		{key: "localhost:5000/team/app:v1"},
		{key: "sha256:abc", wantErr: true},
		{key: "nginx", wantErr: true},
		{key: "docker.io/library/nginx", wantErr: true},
		{key: "docker.io/library/nginx:", wantErr: true},
		{key: "localhost:5000/app", wantErr: true},
		{key: "docker.io/library/nginx@" + dgst, wantErr: true},
		{key: "", wantErr: true},
	}
	seen := map[cid.Cid]string{}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			c, err := KeyCID(tc.key)
			if tc.wantErr {
				if !errors.Is(err, ErrInvalidKey) {
					t.Fatalf("KeyCID(%q) error = %v, want ErrInvalidKey", tc.key, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Version() != 1 || c.Type() != cid.Raw {
				t.Fatalf("CID %s: version %d codec %x, want v1 raw", c, c.Version(), c.Type())
			}
			again, _ := KeyCID(tc.key)
			if !again.Equals(c) {
				t.Fatal("KeyCID is not deterministic")
			}
			if other, dup := seen[c]; dup {
				t.Fatalf("keys %q and %q share CID %s", tc.key, other, c)
			}
			seen[c] = tc.key
		})
	}
	// The namespace keeps a digest key's CID apart from the CID of the
	// content itself (sha256 of the bytes, not of "sluice/sha256:…").
	c, _ := KeyCID(dgst)
	if dec := c.Hash().HexString(); dec[4:] == dgst[len("sha256:"):] {
		t.Fatal("digest key CID equals the content CID")
	}
}

func TestPickIP(t *testing.T) {
	t.Parallel()
	m := func(ss ...string) []ma.Multiaddr {
		var out []ma.Multiaddr
		for _, s := range ss {
			out = append(out, ma.StringCast(s))
		}
		return out
	}
	tests := []struct {
		name         string
		announced    []ma.Multiaddr
		conns        []ma.Multiaddr
		selfLoopback bool
		self         []netip.Addr
		want         string
	}{
		{name: "connection on an announced IP wins",
			announced: m("/ip4/10.0.0.5/tcp/5001", "/ip4/127.0.0.1/tcp/5001", "/ip4/172.17.0.1/tcp/5001"),
			conns:     m("/ip4/172.17.0.1/tcp/41000"), want: "172.17.0.1"},
		{name: "connection from an unannounced IP is not trusted",
			announced: m("/ip4/127.0.0.2/tcp/5001"), conns: m("/ip4/127.0.0.1/tcp/41000"),
			selfLoopback: true, want: "127.0.0.2"},
		{name: "lan node skips loopback",
			announced: m("/ip4/127.0.0.1/tcp/5001", "/ip4/10.0.0.5/tcp/5001"), want: "10.0.0.5"},
		{name: "loopback node prefers loopback",
			announced: m("/ip4/10.0.0.5/tcp/5001", "/ip4/127.0.0.3/tcp/5001"), selfLoopback: true, want: "127.0.0.3"},
		{name: "unspecified ignored, connection used",
			announced: m("/ip4/0.0.0.0/tcp/5001"), conns: m("/ip4/10.1.2.3/tcp/5001"), want: "10.1.2.3"},
		{name: "ipv6", announced: m("/ip6/fd00::7/tcp/5001"), want: "fd00::7"},
		{name: "an address we announce too (docker0) is skipped",
			announced: m("/ip4/172.17.0.1/tcp/5001", "/ip4/10.0.0.5/tcp/5001"),
			self:      []netip.Addr{netip.MustParseAddr("10.0.0.9"), netip.MustParseAddr("172.17.0.1")}, want: "10.0.0.5"},
		{name: "a connection on a shared address is not trusted",
			announced: m("/ip4/172.17.0.1/tcp/5001", "/ip4/10.0.0.5/tcp/5001"), conns: m("/ip4/172.17.0.1/tcp/41000"),
			self: []netip.Addr{netip.MustParseAddr("172.17.0.1")}, want: "10.0.0.5"},
		{name: "only shared addresses: still used",
			announced: m("/ip4/127.0.0.1/tcp/5001"), selfLoopback: true,
			self: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, want: "127.0.0.1"},
		{name: "link-local announced (metadata service) is never picked",
			announced: m("/ip4/169.254.169.254/tcp/80", "/ip6/fe80::1/tcp/80"), conns: m("/ip4/10.1.2.3/tcp/5001"), want: "10.1.2.3"},
		{name: "only link-local: none", announced: m("/ip4/169.254.169.254/tcp/80"), want: ""},
		{name: "nothing", want: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := pickIP(tc.announced, tc.conns, tc.selfLoopback, tc.self)
			if tc.want == "" {
				if ok {
					t.Fatalf("pickIP = %v, want none", got)
				}
				return
			}
			if !ok || got != netip.MustParseAddr(tc.want) {
				t.Fatalf("pickIP = %v, %v; want %s", got, ok, tc.want)
			}
		})
	}
}
