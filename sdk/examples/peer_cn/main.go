// Command peer_cn is a policy that is awkward in Rego: serve content to a
// peer only when the common name of its mTLS certificate subject matches
// one of the glob patterns in data.sluice.peer_cn.patterns (path.Match
// syntax, e.g. "node-*"). The subject is an RFC 4514 distinguished name,
// parsed with its escapes (CN=node\,7 is the name "node,7"; a pattern
// cannot be fooled by "O=x\,CN=node-1"). Requests without a peer (the
// local containerd) and other actions are allowed.
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o peer_cn.wasm ./sdk/examples/peer_cn
package main

import (
	"github.com/sluice-oci/sluice/sdk"
)

var _ = sdk.Handle(decide)

func main() {}

func decide(in sdk.Input) sdk.Decision {
	if in.Action != sdk.ActionServe || in.Peer == nil {
		return sdk.Allow()
	}
	if in.Peer.TLSSubject == "" {
		return sdk.Deny("peer_cn: peer " + in.Peer.ID + " has no TLS client certificate")
	}
	cn, ok := commonName(in.Peer.TLSSubject)
	if !ok {
		return sdk.Deny("peer_cn: no common name in TLS subject " + in.Peer.TLSSubject)
	}
	for _, p := range patterns(in) {
		if match(p, cn) {
			return sdk.Allow()
		}
	}
	return sdk.Deny("peer_cn: peer common name " + cn + " matches no pattern in data.sluice.peer_cn.patterns")
}

// patterns reads data.sluice.peer_cn.patterns (a list of strings).
func patterns(in sdk.Input) []string {
	v, _ := in.Lookup("sluice", "peer_cn", "patterns")
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, p := range list {
		if s, ok := p.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
